package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * Consistency check and repair like {@code qemu-img check}: rebuilds the refcount every cluster
 * should have by walking header, L1/L2 tables (active and snapshots), refcount table and blocks,
 * snapshot table and bitmaps, then compares with the stored refcounts.
 *
 * <ul>
 * <li>stored &lt; expected: corruption (refcount too low; also two structures sharing a cluster)</li>
 * <li>stored &gt; expected: leak</li>
 * <li>entries misaligned or past the end of the file, OFLAG_COPIED wrong: corruption</li>
 * </ul>
 * Runs with the image's exclusive lock held: no I/O runs meanwhile.
 */
final class ImageCheck {
    /**
     * What check needs of an open image, and nothing more: the file and its layout to walk, the
     * refcounts as stored, and the few in-memory changes a repair makes (through the metadata lock).
     */
    interface Subject {
        String filename();
        IoBackend file();
        Qcow2Header header();
        Geometry geometry();
        int l1Entries();
        SnapshotTable snapshots();
        long refcountTableOffset();
        int refcountTableClusters();
        /** A copy of the refcount table's entries. */
        long[] refcountTable();
        /** The refcount block at {@code offset}, through the cache. */
        CachedTable refblock(long offset) throws IOException;
        boolean openedReadOnly();
        /** Takes the image's exclusive lock: no I/O runs until {@link #endCheck}. */
        void beginCheck(boolean repair);
        void endCheck();
        /** Writes everything back, including refcount decrements applied by the first flush. */
        void flushFully() throws IOException;
        void clearCorrupt() throws IOException;
        void setRefcount(long cluster, long value) throws IOException;
        void setL1Entry(int index, long entry) throws IOException;
        /**
         * Replaces the refcount structure by one holding {@code counts} (cluster index → refcount),
         * placed from cluster {@code start} on; the next flush writes it in rule order (R6).
         */
        void rebuildRefcounts(int[] counts, long start) throws IOException;
        void setL2Entry(long l2Offset, int index, long entry) throws IOException;
    }

    /** A refcount to set: {@code cluster} should have {@code refcount}. */
    private record RefcountFix(long cluster, long refcount) {}

    /** An entry to rewrite with OFLAG_COPIED right: entry {@code index} of the L2 table at {@code l2Offset} (-1: the L1 table). */
    private record CopiedFix(long l2Offset, int index, long entry) {}

    private final Subject img;
    private final Geometry geo;
    private final Qcow2Header h;
    private final int cs;
    private final long fileClusters;
    private final int[] expected;
    /** {@link #expected} before the refcount structures themselves were counted: what a rebuild keeps. */
    private int[] withoutRefcounts;
    /** Why the refcount structure is beyond saving (entries past the end, overlaps, uncovered clusters), or null. */
    private String rebuildReason;
    private final List<String> messages = new ArrayList<>();
    private long corruptions, leaks, checkErrors;
    private long errorLines, leakLines, unlistedCopied, unlistedOther;
    private long allocated, fragmented, compressed;
    private long nextContiguous = -1;
    /** Cluster index → stored refcount, filled by compare(). */
    private long[] stored;
    private final List<RefcountFix> tooHigh = new ArrayList<>();
    private final List<RefcountFix> tooLow = new ArrayList<>();
    private final List<CopiedFix> badCopied = new ArrayList<>();
    private long highest = -1;

    private ImageCheck(Subject img) throws IOException {
        this.img = img;
        this.geo = img.geometry();
        this.h = img.header();
        this.cs = geo.clusterSize;
        long size = img.file().size();
        this.fileClusters = (size + cs - 1) / cs;
        if (fileClusters > Integer.MAX_VALUE - 16) throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, img.filename() + ": image too large to check");
        this.expected = new int[(int) fileClusters];
    }

    static CheckReport run(Subject img, RepairMode mode) throws IOException {
        boolean repair = mode != RepairMode.NONE;
        img.beginCheck(repair);
        try {
            img.flushFully();
            ImageCheck first = new ImageCheck(img);
            first.analyze();
            if (!repair || (first.leaks == 0 && first.corruptions == 0)) {
                if (mode == RepairMode.ALL && first.corruptions == 0 && first.checkErrors == 0) img.clearCorrupt();
                return first.report(0, 0);
            }
            if (mode == RepairMode.ALL && first.rebuildReason != null) {
                img.rebuildRefcounts(first.withoutRefcounts, first.fileClusters);
                first.fixCopied();
            } else {
                first.fix(mode);
            }
            img.flushFully();
            ImageCheck second = new ImageCheck(img);
            second.analyze();
            long leaksFixed = Math.max(0, first.leaks - second.leaks);
            long corrFixed = mode == RepairMode.ALL ? Math.max(0, first.corruptions - second.corruptions) : 0;
            if (mode == RepairMode.ALL && second.corruptions == 0 && second.checkErrors == 0) img.clearCorrupt();
            second.messages.addAll(0, first.messages.stream().map(m -> "(before repair) " + m).toList());
            if (mode == RepairMode.ALL && first.rebuildReason != null)
                second.messages.add(first.messages.size(), "Rebuilding refcount structure (" + first.rebuildReason + ")");
            return second.report(leaksFixed, corrFixed);
        } finally {
            img.endCheck();
        }
    }

    private CheckReport report(long leaksFixed, long corrFixed) {
        long total = geo.guestClusters();
        if (unlistedCopied > 0) messages.add("ERROR OFLAG_COPIED: " + unlistedCopied + " more entries not listed");
        if (unlistedOther > 0) messages.add("ERROR " + unlistedOther + " more corruptions not listed");
        return new CheckReport(img.filename(), "qcow2", checkErrors, corruptions, leaks, leaksFixed, corrFixed,
                (highest + 1) * cs, total, allocated, fragmented, compressed, List.copyOf(messages));
    }

    private void corruption(String m) {
        corruptions++;
        // Leak lines and error lines are capped apart (a flood of leaks must not hide an error); what
        // the cap drops is counted, OFLAG_COPIED apart, so a reader can still tell what was found.
        if (errorLines < 1000) {
            errorLines++;
            messages.add("ERROR " + m);
        } else if (m.startsWith("OFLAG_COPIED")) {
            unlistedCopied++;
        } else {
            unlistedOther++;
        }
    }

    /** Counts one reference to every cluster of [off, off+len). */
    private void ref(long off, long len, String what) {
        if (len <= 0) return;
        if (off < 0 || off > Long.MAX_VALUE - len) {
            corruption(what + " at " + off + " is not a valid offset");
            return;
        }
        for (long c = off / cs; c <= (off + len - 1) / cs; c++) {
            if (c >= fileClusters) {
                corruption(what + " at " + off + " lies past the end of the file");
                return;
            }
            expected[(int) c]++;
        }
    }

    private MemorySegment readCluster(Arena a, long off, long len) throws IOException {
        MemorySegment s = a.allocate(Math.max(len, 8), 4096).asSlice(0, len);
        img.file().read(off, s);
        return s;
    }

    private void analyze() throws IOException {
        ref(0, cs, "header");
        if (h.cryptoHeaderLength > 0) ref(h.cryptoHeaderOffset, h.cryptoHeaderLength, "encryption header");
        try (Arena a = Arena.ofConfined()) {
            // active L1
            ref(h.l1TableOffset, (long) img.l1Entries() * 8, "L1 table");
            walkL1(a, FileReads.longs(img.file(), h.l1TableOffset, img.l1Entries()), true);
            // snapshots
            if (h.nbSnapshots > 0) ref(h.snapshotsOffset, img.snapshots().bytes(), "snapshot table");
            for (SnapshotTable.SnapshotL1 s : img.snapshots().l1s()) {
                ref(s.offset(), s.entries() * 8, "snapshot L1 table");
                walkL1(a, FileReads.longs(img.file(), s.offset(), (int) s.entries()), false);
            }
            // bitmaps (only when autoclear bit 0 says the extension is valid, as qemu-img check)
            if (Bitmaps.valid(h)) walkBitmaps(a);
            withoutRefcounts = expected.clone();
            // refcount structures
            long rtOff = img.refcountTableOffset(), rtLen = (long) img.refcountTableClusters() * cs;
            if ((rtOff + rtLen + cs - 1) / cs > fileClusters) rebuild("the refcount table lies past the end of the file");
            ref(rtOff, rtLen, "refcount table");
            long[] rt = img.refcountTable();
            for (int i = 0; i < rt.length; i++) {
                long boff = rt[i] & Geometry.REFTABLE_OFFSET_MASK;
                if (boff == 0) continue;
                if (boff % cs != 0) {
                    corruption("refcount block " + i + " at " + boff + " is not cluster aligned");
                    rebuild("refcount block " + i + " is not cluster aligned");
                } else {
                    if (boff / cs >= fileClusters) rebuild("refcount block " + i + " lies past the end of the file");
                    ref(boff, cs, "refcount block " + i);
                }
            }
            findRebuildReasons(rt, rtOff, rtLen);
        }
        compare();
        checkCopiedFlags();
    }

    private void rebuild(String why) {
        if (rebuildReason == null) rebuildReason = why;
    }

    /**
     * The refcount structure is beyond saving when raising refcounts in place cannot work: one of
     * its clusters is shared with other metadata or data (writing it would destroy the other), or
     * a referenced cluster has no refcount block (creating one may need a cluster the broken
     * structure calls free while it is in use).
     */
    private void findRebuildReasons(long[] rt, long rtOff, long rtLen) {
        for (long c = rtOff / cs; c < Math.min(fileClusters, (rtOff + rtLen + cs - 1) / cs); c++)
            if (expected[(int) c] > 1) rebuild("the refcount table overlaps other metadata or data at cluster " + c);
        for (int i = 0; i < rt.length; i++) {
            long boff = rt[i] & Geometry.REFTABLE_OFFSET_MASK;
            if (boff != 0 && boff % cs == 0 && boff / cs < fileClusters && expected[(int) (boff / cs)] > 1)
                rebuild("refcount block " + i + " overlaps other metadata or data at cluster " + boff / cs);
        }
        long perBlock = geo.refcountsPerBlock();
        for (long c = 0; c < fileClusters; c++) {
            if (withoutRefcounts[(int) c] == 0) continue;
            long bi = c / perBlock;
            if (bi >= rt.length || (rt[(int) bi] & Geometry.REFTABLE_OFFSET_MASK) == 0) {
                rebuild("no refcount block covers cluster " + c);
                return;
            }
        }
    }

    private void walkL1(Arena a, long[] l1, boolean active) throws IOException {
        MemorySegment l2 = a.allocate(cs, 4096);
        for (int i = 0; i < l1.length; i++) {
            long l2off = l1[i] & L2Entry.OFFSET_MASK;
            if (l2off == 0) continue;
            if (l2off % cs != 0) {
                corruption("L1 entry " + i + ": L2 table offset " + l2off + " is not cluster aligned");
                continue;
            }
            if (l2off / cs >= fileClusters) {
                corruption("L1 entry " + i + ": L2 table at " + l2off + " lies past the end of the file");
                continue;
            }
            ref(l2off, cs, "L2 table");
            img.file().read(l2off, l2);
            nextContiguous = -1; // qemu counts fragmentation within each L2 table
            int stride = geo.l2Stride();
            for (int j = 0; j < cs / 8 / stride; j++) {
                long e = l2.get(CachedTable.BE_LONG, j * 8L * stride);
                long guest = (((long) i << geo.l2Bits) + j) * cs;
                if (stride == 2) {
                    String bad = L2Entry.badBitmap(e, l2.get(CachedTable.BE_LONG, j * 16L + 8));
                    if (bad != null) corruption("L2 entry for guest offset " + guest + ": " + bad);
                }
                switch (geo.typeOf(e)) {
                    case L2Entry.NORMAL, L2Entry.ZERO_ALLOC -> {
                        long off = e & L2Entry.OFFSET_MASK;
                        if (off % cs != 0) {
                            corruption("L2 entry for guest offset " + guest + ": host offset " + off + " is not cluster aligned");
                            continue;
                        }
                        // with an external data file the offset is in that file, which this file's refcounts do not count
                        if (!h.hasDataFile() && off / cs >= fileClusters) {
                            corruption("L2 entry for guest offset " + guest + ": host cluster " + off + " lies past the end of the file");
                            continue;
                        }
                        if (!h.hasDataFile()) ref(off, cs, "data cluster");
                        if (active) {
                            allocated++;
                            if (nextContiguous >= 0 && off != nextContiguous) fragmented++;
                            nextContiguous = off + cs;
                        }
                    }
                    case L2Entry.COMPRESSED_CLUSTER -> {
                        HostRange r = geo.compressedRange(e);
                        ref(r.offset(), r.length(), "compressed cluster");
                        if (active) {
                            allocated++;
                            compressed++;
                            fragmented++; // like qemu: compressed clusters count as fragmented by nature
                        }
                    }
                    default -> {}
                }
            }
        }
    }

    private void walkBitmaps(Arena a) throws IOException {
        ref(h.bitmapDirectoryOffset, h.bitmapDirectorySize, "bitmap directory");
        if (h.bitmapDirectoryOffset / cs >= fileClusters || h.bitmapDirectorySize > img.file().size() - h.bitmapDirectoryOffset) return;
        MemorySegment dir = readCluster(a, h.bitmapDirectoryOffset, h.bitmapDirectorySize);
        ByteBuffer b = dir.asByteBuffer().order(ByteOrder.BIG_ENDIAN);
        int pos = 0;
        for (int i = 0; i < h.nbBitmaps && pos + 24 <= b.limit(); i++) {
            long tableOff = b.getLong(pos);
            long tableSize = Integer.toUnsignedLong(b.getInt(pos + 8));
            int nameSize = b.getShort(pos + 18) & 0xffff;
            long extra = Integer.toUnsignedLong(b.getInt(pos + 20));
            if (tableOff <= 0 || tableOff % cs != 0 || tableSize > (1L << 24)) {
                corruption("bitmap " + i + " has a bad bitmap table (" + tableOff + ", " + tableSize + " entries)");
            } else if (tableSize > 0) {
                ref(tableOff, tableSize * 8, "bitmap table");
                if (tableOff / cs < fileClusters && tableSize * 8 <= (fileClusters - tableOff / cs) * cs) {
                    for (long e : FileReads.longs(img.file(), tableOff, (int) tableSize)) {
                        long off = e & BitmapDirectory.ENTRY_OFFSET_MASK;
                        if (off % cs != 0) corruption("bitmap " + i + " has a data cluster at " + off + ", not cluster aligned");
                        else if (off != 0) ref(off, cs, "bitmap data");
                    }
                }
            }
            long next = pos + ((24 + extra + nameSize + 7) & ~7L);
            if (next > b.limit()) {
                if (i + 1 < h.nbBitmaps) corruption("bitmap directory entry " + i + " runs past the directory");
                break;
            }
            pos = (int) next;
        }
    }

    private void compare() throws IOException {
        int order = geo.refcountOrder;
        long perBlock = geo.refcountsPerBlock();
        long[] rt = img.refcountTable();
        long covered = (long) rt.length * perBlock;
        long limit = Math.max(fileClusters, 0);
        stored = new long[(int) fileClusters];
        long max = geo.maxRefcount();
        for (int bi = 0; bi < rt.length && (long) bi * perBlock < limit; bi++) {
            long boff = rt[bi] & Geometry.REFTABLE_OFFSET_MASK;
            CachedTable b = null;
            if (boff != 0 && boff % cs == 0 && boff / cs < fileClusters) b = img.refblock(boff);
            for (long i = 0; i < perBlock; i++) {
                long c = bi * perBlock + i;
                if (c >= limit) break;
                long have = b == null ? 0 : b.refcount((int) i, order);
                stored[(int) c] = have;
                compareOne(c, have, max);
            }
        }
        for (long c = covered; c < limit; c++) compareOne(c, 0, max);
    }

    private void compareOne(long c, long have, long max) {
        long want = expected[(int) c];
        if (have > 0 || want > 0) highest = Math.max(highest, c);
        if (want > max) {
            corruption("cluster " + c + " is referenced " + want + " times, more than " + h.refcountBits() + "-bit refcounts can hold");
            return;
        }
        if (have < want) {
            corruption("refcount too low for cluster " + c + " (offset " + c * cs + "): refcount " + have + ", referenced " + want + " times");
            tooLow.add(new RefcountFix(c, want));
        } else if (have > want) {
            leaks++;
            if (leakLines++ < 1000) messages.add("Leaked cluster " + c + " (offset " + c * cs + ") refcount=" + have + " reference=" + want);
            tooHigh.add(new RefcountFix(c, want));
        }
    }

    /** OFLAG_COPIED must be set exactly when the refcount is 1 (active L1 and its L2 tables). */
    private void checkCopiedFlags() throws IOException {
        try (Arena a = Arena.ofConfined()) {
            long[] l1 = FileReads.longs(img.file(), h.l1TableOffset, img.l1Entries());
            MemorySegment l2 = a.allocate(cs, 4096);
            for (int i = 0; i < l1.length; i++) {
                long l2off = l1[i] & L2Entry.OFFSET_MASK;
                if (l2off == 0 || l2off % cs != 0 || l2off / cs >= fileClusters) continue;
                boolean should = stored[(int) (l2off / cs)] == 1;
                if (should != ((l1[i] & L2Entry.COPIED) != 0)) {
                    corruption("OFLAG_COPIED L2 table at " + l2off + ": refcount " + stored[(int) (l2off / cs)]);
                }
                boolean fixed = repairedCounts()[(int) (l2off / cs)] == 1;
                if (fixed != ((l1[i] & L2Entry.COPIED) != 0)) {
                    badCopied.add(new CopiedFix(-1, i, fixed ? l1[i] | L2Entry.COPIED : l1[i] & ~L2Entry.COPIED));
                }
                img.file().read(l2off, l2);
                int stride = geo.l2Stride();
                for (int j = 0; j < cs / 8 / stride; j++) {
                    long e = l2.get(CachedTable.BE_LONG, j * 8L * stride);
                    int t = geo.typeOf(e);
                    if (t != L2Entry.NORMAL && t != L2Entry.ZERO_ALLOC) continue;
                    long off = e & L2Entry.OFFSET_MASK;
                    if (off % cs != 0 || off / cs >= fileClusters) continue;
                    boolean want = stored[(int) (off / cs)] == 1;
                    if (want != ((e & L2Entry.COPIED) != 0)) {
                        corruption("OFLAG_COPIED data cluster: l2_entry=" + Long.toHexString(e) + " refcount=" + stored[(int) (off / cs)]);
                    }
                    boolean fixedL2 = repairedCounts()[(int) (off / cs)] == 1;
                    if (fixedL2 != ((e & L2Entry.COPIED) != 0)) {
                        badCopied.add(new CopiedFix(l2off, j, fixedL2 ? e | L2Entry.COPIED : e & ~L2Entry.COPIED));
                    }
                }
            }
        }
    }

    /** The refcounts a repair (-r all) leaves: the rebuilt ones leave out the old refcount structure. */
    private int[] repairedCounts() {
        return rebuildReason != null ? withoutRefcounts : expected;
    }

    private void fixCopied() throws IOException {
        for (CopiedFix f : badCopied) {
            if (f.l2Offset() < 0) img.setL1Entry(f.index(), f.entry());
            else img.setL2Entry(f.l2Offset(), f.index(), f.entry());
        }
    }

    private void fix(RepairMode mode) throws IOException {
        for (RefcountFix f : tooHigh) img.setRefcount(f.cluster(), f.refcount());
        if (mode != RepairMode.ALL) return;
        long max = geo.maxRefcount();
        for (RefcountFix f : tooLow) img.setRefcount(f.cluster(), Math.min(f.refcount(), max));
        fixCopied(); // after the refcounts are right; the second pass checks the result
    }
}
