package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * Persistent dirty bitmaps of an open image (docs/ordering.md, rules B1-B4): loads the bitmap
 * directory named by the bitmaps header extension (when autoclear bit 0 says it is valid), marks the
 * enabled ("auto") consistent bitmaps in use before the first change of a write-open, sets their bits
 * in memory for every write, zero and discard, and writes them back on close with in_use cleared.
 * Bitmaps found in use (inconsistent) or disabled are kept as they are and never changed.
 */
final class Bitmaps {
    private static final VarHandle WORDS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** A bitmap this open tracks: its directory entry, its table and its bits (one per granule). */
    private record Tracked(BitmapDirectory.Entry entry, long[] table, long[] words, long bits) {}

    private final IoBackend file;
    private final String filename;
    private final Geometry geo;
    private final byte[] directory;
    private final long directoryOffset;
    private final List<BitmapDirectory.Entry> entries;
    /** Each entry's bitmap table as loaded (for {@link #markClusters}). */
    private final List<long[]> tables;
    /** Consistent bitmaps with their bits (every open reads them: NBD serves them as dirty-bitmap contexts). */
    private final List<Tracked> loaded;
    /** The loaded bitmaps this write-open changes: enabled ones. */
    private final List<Tracked> tracked;
    /** Why the directory was not loaded (read-only opens keep going without bitmaps), or null. */
    private final String loadError;
    /** True once B1 has marked the tracked bitmaps in use on disk: close must write them back. */
    private volatile boolean inUseOnDisk;

    private Bitmaps(IoBackend file, String filename, Geometry geo, byte[] directory, long directoryOffset,
                    List<BitmapDirectory.Entry> entries, List<long[]> tables, List<Tracked> loaded, boolean readOnly, String loadError) {
        this.file = file;
        this.filename = filename;
        this.geo = geo;
        this.directory = directory;
        this.directoryOffset = directoryOffset;
        this.entries = entries;
        this.tables = tables;
        this.loaded = loaded;
        this.tracked = readOnly ? List.of() : loaded.stream().filter(t -> t.entry.auto()).toList();
        this.loadError = loadError;
    }

    /** Whether the header's bitmaps extension is valid (present, and autoclear bit 0 set). */
    static boolean valid(Qcow2Header h) {
        return h.nbBitmaps > 0 && h.version >= 3 && (h.autoclear & BitmapDirectory.AUTOCLEAR_BITMAPS) != 0;
    }

    /**
     * Loads the directory and marks its clusters (directory, tables, data) for the overlap check.
     * A malformed directory fails a write-open with a CORRUPT {@link Qcow2Exception}; a read-only
     * open goes on without bitmaps ({@link #loadError()} says why). The bits of every consistent
     * bitmap are read; an open for writing tracks the enabled ones.
     */
    static Bitmaps load(IoBackend file, String filename, Qcow2Header h, Geometry geo, OverlapCheck overlap, boolean readOnly) throws IOException {
        if (!valid(h)) return new Bitmaps(file, filename, geo, new byte[0], 0, List.of(), List.of(), List.of(), readOnly, null);
        int cs = geo.clusterSize;
        long fsize = file.size();
        try {
            if (h.bitmapDirectoryOffset >= fsize || h.bitmapDirectorySize > fsize - h.bitmapDirectoryOffset)
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt bitmap directory: it lies past the end of the file");
            byte[] dir = FileReads.bytes(file, h.bitmapDirectoryOffset, (int) h.bitmapDirectorySize);
            List<BitmapDirectory.Entry> entries = BitmapDirectory.parse(dir, h.nbBitmaps, geo.virtualSize, cs, fsize);
            List<long[]> tables = new ArrayList<>();
            for (BitmapDirectory.Entry e : entries) {
                long[] t = FileReads.longs(file, e.tableOffset(), e.tableSize());
                for (int i = 0; i < t.length; i++) BitmapDirectory.checkTableEntry(e, i, t[i], cs, fsize);
                tables.add(t);
            }
            // every bitmap cluster must be free of other metadata and of the other bitmap clusters:
            // the bitmap writes (B1-B4) go exactly there
            java.util.Set<Long> seen = new java.util.HashSet<>();
            claim(overlap, geo, seen, h.bitmapDirectoryOffset, h.bitmapDirectorySize, MetadataKind.BITMAPS);
            for (int i = 0; i < entries.size(); i++) {
                claim(overlap, geo, seen, entries.get(i).tableOffset(), entries.get(i).tableSize() * 8L, MetadataKind.BITMAP_TABLE);
                for (long t : tables.get(i)) if ((t & BitmapDirectory.ENTRY_OFFSET_MASK) != 0) claim(overlap, geo, seen, t & BitmapDirectory.ENTRY_OFFSET_MASK, cs, MetadataKind.BITMAP_DATA);
            }
            List<Tracked> loaded = new ArrayList<>();
            for (int i = 0; i < entries.size(); i++) {
                BitmapDirectory.Entry e = entries.get(i);
                if (!e.inUse()) loaded.add(readBits(file, e, tables.get(i), geo));
            }
            return new Bitmaps(file, filename, geo, dir, h.bitmapDirectoryOffset, entries, tables, loaded, readOnly, null);
        } catch (Qcow2Exception e) {
            if (!readOnly) throw new Qcow2Exception(e.kind(), filename + ": " + e.getMessage(), e);
            return new Bitmaps(file, filename, geo, new byte[0], 0, List.of(), List.of(), List.of(), true, e.getMessage());
        }
    }

    /**
     * Under meta: marks the loaded bitmaps' clusters (directory, tables, data) again after the
     * overlap map was cleared (check's refcount rebuild); load already proved they overlap nothing.
     */
    void markClusters(OverlapCheck overlap) {
        if (directory.length > 0) overlap.markRange(directoryOffset, directory.length, MetadataKind.BITMAPS);
        for (int i = 0; i < entries.size(); i++) {
            overlap.markRange(entries.get(i).tableOffset(), entries.get(i).tableSize() * 8L, MetadataKind.BITMAP_TABLE);
            for (long t : tables.get(i))
                if ((t & BitmapDirectory.ENTRY_OFFSET_MASK) != 0) overlap.markIfAbsent(t & BitmapDirectory.ENTRY_OFFSET_MASK, MetadataKind.BITMAP_DATA);
        }
    }

    private static void claim(OverlapCheck overlap, Geometry geo, java.util.Set<Long> seen, long off, long len, MetadataKind kind) throws Qcow2Exception {
        for (long c = geo.clusterStart(off); c < off + len; c += geo.clusterSize) {
            MetadataKind k = overlap.kindAt(c);
            if (k != null || !seen.add(c))
                throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "corrupt bitmap directory: the " + kind.label + " at " + c + " overlaps "
                        + (k != null ? "the " + k.label : "another bitmap cluster"));
            overlap.markLocked(c, kind);
        }
    }

    private static Tracked readBits(IoBackend file, BitmapDirectory.Entry e, long[] table, Geometry geo) throws IOException {
        int cs = geo.clusterSize;
        long bits = e.bits(geo.virtualSize);
        long[] words = new long[(int) ((bits + 63) >>> 6)];
        int wordsPerCluster = cs / 8;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(cs, 4096);
            for (int i = 0; i < table.length; i++) {
                int w0 = i * wordsPerCluster, w1 = Math.min(words.length, w0 + wordsPerCluster);
                long off = table[i] & BitmapDirectory.ENTRY_OFFSET_MASK;
                if (off != 0) {
                    file.read(off, buf);
                    for (int w = w0; w < w1; w++) words[w] = buf.get(LE_LONG, (long) (w - w0) * 8);
                } else if ((table[i] & BitmapDirectory.ENTRY_ALL_ONES) != 0) {
                    for (int w = w0; w < w1; w++) words[w] = -1L;
                }
            }
        }
        if ((bits & 63) != 0 && words.length > 0) words[words.length - 1] &= (1L << (bits & 63)) - 1; // no bits past the end
        return new Tracked(e, table, words, bits);
    }

    /** Autoclear bits this open keeps valid: bit 0 when the bitmaps loaded. */
    long keptAutoclear() {
        return entries.isEmpty() ? 0 : BitmapDirectory.AUTOCLEAR_BITMAPS;
    }

    String loadError() { return loadError; }

    /** The bitmaps as {@code qemu-img info} lists them. */
    List<BitmapInfo> info() {
        List<BitmapInfo> out = new ArrayList<>();
        for (BitmapDirectory.Entry e : entries) {
            List<String> flags = new ArrayList<>();
            boolean inUse = e.inUse();
            if (inUse) flags.add("in-use");
            if (e.auto()) flags.add("auto");
            out.add(new BitmapInfo(e.name(), e.granularity(), flags));
        }
        return out;
    }

    /** Names of the bitmaps this open tracks (enabled and consistent at open). */
    List<String> trackedNames() {
        List<String> out = new ArrayList<>();
        for (Tracked t : tracked) out.add(t.entry.name());
        return out;
    }

    /**
     * Rule B1: before the first change of the image, the tracked bitmaps are flagged in use in the
     * directory (written in place: only their flag words change, so any torn subset of the write is
     * a valid directory) and synced. Called once, from {@link WriteGuard#beforeChange}.
     */
    void markInUse() throws IOException {
        if (tracked.isEmpty() || inUseOnDisk) return;
        writeDirectory(true);
        inUseOnDisk = true;
    }

    /** True while this open has the tracked bitmaps flagged in use on disk (it changed the image). */
    boolean inUseNow() { return inUseOnDisk; }

    /** Sets the bits of every tracked bitmap for guest bytes [offset, offset+length) (in memory). */
    void markDirty(long offset, long length) {
        if (length <= 0 || tracked.isEmpty()) return;
        for (Tracked t : tracked) {
            int g = t.entry.granularityBits();
            long first = offset >>> g, last = Math.min((offset + length - 1) >>> g, t.bits - 1);
            for (long bit = first; bit <= last; ) {
                int w = (int) (bit >>> 6);
                long upto = Math.min(last, ((long) w << 6) + 63);
                int lo = (int) (bit & 63), hi = (int) (upto & 63);
                long mask = (hi == 63 ? -1L : (1L << (hi + 1)) - 1) & (-1L << lo);
                if (((long) WORDS.getAcquire(t.words, w) & mask) != mask) WORDS.getAndBitwiseOr(t.words, w, mask);
                bit = upto + 1;
            }
        }
    }

    /** Names of the consistent bitmaps (their bits are known: NBD offers them as qemu:dirty-bitmap contexts). */
    List<String> consistentNames() {
        List<String> out = new ArrayList<>();
        for (Tracked t : loaded) out.add(t.entry.name());
        return out;
    }

    /**
     * Runs of the consistent bitmap {@code name} over guest bytes [offset, offset+length): each
     * {start, length, 1 if dirty else 0}, consecutive, merged; null when the bitmap is unknown or
     * inconsistent.
     */
    List<long[]> runs(String name, long offset, long length) {
        for (Tracked t : loaded) {
            if (!t.entry.name().equals(name)) continue;
            List<long[]> out = new ArrayList<>();
            int g = t.entry.granularityBits();
            long end = Math.min(offset + length, geo.virtualSize);
            for (long pos = offset; pos < end; ) {
                long bit = pos >>> g;
                long word = t.words[(int) (bit >>> 6)];
                long set = (word >>> (bit & 63)) & 1;
                boolean uniform = (bit & 63) == 0 && (word == 0 || word == -1L);
                long next = Math.min(end, (bit + (uniform ? 64 : 1)) << g);
                if (!out.isEmpty() && out.getLast()[2] == set) out.getLast()[1] += next - pos;
                else out.add(new long[] {pos, next - pos, set});
                pos = next;
            }
            return out;
        }
        return null;
    }

    /** Dirty extents of the consistent bitmap {@code name} as [start, length) pairs in guest bytes, or null if it is unknown or inconsistent. */
    List<long[]> dirtyExtents(String name) {
        List<long[]> r = runs(name, 0, geo.virtualSize);
        if (r == null) return null;
        List<long[]> out = new ArrayList<>();
        for (long[] x : r) if (x[2] == 1) out.add(new long[] {x[0], x[1]});
        return out;
    }

    /**
     * Rules B2-B4, on close, after the guest metadata flush: the bits go to data clusters (existing
     * ones rewritten in place; new ones allocated, refcount raised), {@code syncRefcounts} makes
     * the new refcounts durable and a datasync the data; then the bitmap tables are written in place
     * and synced; then the directory with in_use cleared, synced. Until that last write the bitmaps
     * are flagged in use on disk, so a crash anywhere leaves them inconsistent (and at worst leaks the
     * new clusters). Tables never shrink here: bits are only ever set, so no cluster is freed.
     */
    void storeOnClose(ClusterAllocation allocate, IoAction syncRefcounts) throws IOException {
        if (!inUseOnDisk) return;
        int cs = geo.clusterSize;
        int wordsPerCluster = cs / 8;
        long[][] newTables = new long[tracked.size()][];
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(cs, 4096);
            for (int k = 0; k < tracked.size(); k++) {
                Tracked t = tracked.get(k);
                long[] table = t.table.clone();
                for (int i = 0; i < table.length; i++) {
                    int w0 = i * wordsPerCluster, w1 = Math.min(t.words.length, w0 + wordsPerCluster);
                    boolean any = false;
                    for (int w = w0; w < w1 && !any; w++) any = t.words[w] != 0;
                    if ((table[i] & BitmapDirectory.ENTRY_OFFSET_MASK) == 0 && (!any || (table[i] & BitmapDirectory.ENTRY_ALL_ONES) != 0)) continue;
                    if ((table[i] & BitmapDirectory.ENTRY_OFFSET_MASK) == 0) table[i] = allocate.bitmapDataCluster();
                    buf.fill((byte) 0);
                    for (int w = w0; w < w1; w++) buf.set(LE_LONG, (long) (w - w0) * 8, t.words[w]);
                    file.write(table[i] & BitmapDirectory.ENTRY_OFFSET_MASK, buf);
                }
                newTables[k] = table;
            }
            syncRefcounts.run(); // B2: new refcounts durable before any table points at their clusters
            file.datasync();     // B2: the data durable before the tables (and then the directory) say it is valid
            for (int k = 0; k < tracked.size(); k++) {
                long[] table = newTables[k];
                if (table.length == 0) continue;
                MemorySegment ts = a.allocate(table.length * 8L, 4096);
                for (int i = 0; i < table.length; i++) ts.set(CachedTable.BE_LONG, i * 8L, table[i]);
                file.write(tracked.get(k).entry.tableOffset(), ts);
            }
            file.datasync();     // B3: tables durable before in_use is cleared
        }
        writeDirectory(false);   // B4
        inUseOnDisk = false;
    }

    /** Writes the directory in place with the tracked bitmaps' in_use flag set or cleared, and syncs it. */
    private void writeDirectory(boolean inUse) throws IOException {
        byte[] d = directory.clone();
        for (Tracked t : tracked) {
            int flags = inUse ? t.entry.flags() | BitmapDirectory.FLAG_IN_USE : t.entry.flags() & ~BitmapDirectory.FLAG_IN_USE;
            int p = t.entry.pos() + 12;
            d[p] = (byte) (flags >>> 24);
            d[p + 1] = (byte) (flags >>> 16);
            d[p + 2] = (byte) (flags >>> 8);
            d[p + 3] = (byte) flags;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(d.length, 4096);
            s.copyFrom(MemorySegment.ofArray(d));
            file.write(directoryOffset, s);
            file.datasync();
        }
    }

    /** Allocates a host cluster for bitmap data (refcount raised in memory). */
    interface ClusterAllocation {
        long bitmapDataCluster() throws IOException;
    }

    interface IoAction {
        void run() throws IOException;
    }

    @Override
    public String toString() {
        return filename + ": " + entries.size() + " bitmap(s)";
    }
}
