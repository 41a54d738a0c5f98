package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;

/**
 * Internal snapshots: create, apply (revert the active image to a snapshot) and delete, with
 * qemu-img's semantics. Each runs with the image's exclusive lock held (no guest I/O meanwhile),
 * starts from a fully flushed image and orders its writes by rules S3..S6 of docs/ordering.md:
 *
 * <ul>
 * <li>S3: a reference is counted before it exists: refcounts raised and durable before the
 * snapshot table (create) or the active L1 (apply) names the clusters.</li>
 * <li>S4: the snapshot table is written to fresh clusters and synced before the header names it;
 * the header's two fields (nb_snapshots, snapshots_offset) lie in one sector and change in one
 * synced write; the old table is freed only after that.</li>
 * <li>S5: a reference is dropped before it is uncounted: refcounts of what a deleted snapshot (or
 * the replaced active L1) referenced go down only after the header (or the new L1) is durable.</li>
 * <li>S6: OFLAG_COPIED is recomputed from the refcounts in memory and written in the same flush
 * as the refcounts that change it (phase A refcounts, phase B flags).</li>
 * </ul>
 *
 * qcow2 counts one reference per path from an L1 table: a snapshot that shares an L2 table with
 * the active image adds one to the table's refcount and one to every cluster the table maps.
 */
final class SnapshotOps {
    private final IoBackend file;
    private final String filename;
    private final Qcow2Header h;
    private final Geometry geo;
    private final MetadataCache cache;
    private final RefcountAllocator alloc;
    private final ClusterMap map;
    private final OverlapCheck overlap;
    private final WriteBack writeBack;
    private final WriteGuard guard;
    private final SharedExclusiveLock exclusive;
    private final int cs;
    private volatile SnapshotTable table;

    SnapshotOps(IoBackend file, String filename, Qcow2Header h, Geometry geo, MetadataCache cache, RefcountAllocator alloc, ClusterMap map,
            OverlapCheck overlap, WriteBack writeBack, WriteGuard guard, SharedExclusiveLock exclusive, SnapshotTable table) {
        this.file = file;
        this.filename = filename;
        this.h = h;
        this.geo = geo;
        this.cache = cache;
        this.alloc = alloc;
        this.map = map;
        this.overlap = overlap;
        this.writeBack = writeBack;
        this.guard = guard;
        this.exclusive = exclusive;
        this.cs = geo.clusterSize;
        this.table = table;
    }

    SnapshotTable table() { return table; }

    List<SnapshotInfo> list() {
        return table.entries().stream().map(SnapshotTable.Entry::info).toList();
    }

    /**
     * The L1 table of the snapshot with ID or name {@code key}, zero-padded to the longest of the
     * active L1 and what the snapshot's virtual size needs.
     */
    long[] l1Of(String key) throws IOException {
        SnapshotTable.Entry e = table.find(key);
        if (e == null) throw notFound(key);
        long need = l1EntriesFor(sizeOf(e));
        if (need > Qcow2Header.MAX_L1_ENTRIES) throw new MetadataCorruption("snapshot '" + key + "': virtual size " + sizeOf(e) + " is too large");
        long[] l1 = new long[(int) Math.max(Math.max(map.l1().length(), e.l1Entries()), need)];
        long[] s = FileReads.longs(file, e.l1Offset(), (int) e.l1Entries());
        System.arraycopy(s, 0, l1, 0, s.length);
        return l1;
    }

    /** The snapshot's virtual size: recorded in its extra data, else the image's (as qemu reads such entries). */
    long sizeOf(String key) throws IOException {
        SnapshotTable.Entry e = table.find(key);
        if (e == null) throw notFound(key);
        return sizeOf(e);
    }

    private long sizeOf(SnapshotTable.Entry e) {
        return e.diskSize() >= 0 ? e.diskSize() : geo.virtualSize;
    }

    /** L1 entries that map a guest disk of {@code size} bytes. */
    private long l1EntriesFor(long size) {
        int bits = geo.clusterBits + geo.l2Bits;
        return (size + (1L << bits) - 1) >>> bits;
    }

    private Qcow2Exception notFound(String key) {
        return new Qcow2Exception(Qcow2Exception.Kind.NOT_FOUND, filename + ": snapshot '" + key + "' not found");
    }

    private interface Op<T> {
        T run() throws IOException;
    }

    private <T> T exclusively(Op<T> op) throws IOException {
        if (guard.closed()) throw new IOException(filename + ": image is closed");
        exclusive.lockExclusive();
        try {
            guard.checkWritable();
            guard.beforeChange();
            return op.run();
        } finally {
            exclusive.unlockExclusive();
        }
    }

    // ---------------------------------------------------------------- create

    SnapshotInfo create(String name) throws IOException {
        if (name == null) throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, "snapshot name missing");
        if (name.getBytes(StandardCharsets.UTF_8).length > 0xffff) throw new Qcow2Exception(Qcow2Exception.Kind.INVALID_ARGUMENT, "snapshot name too long");
        return exclusively(() -> {
            if (table.entries().size() >= SnapshotTable.MAX_SNAPSHOTS)
                throw new Qcow2Exception(Qcow2Exception.Kind.LIMIT, filename + ": too many snapshots (" + SnapshotTable.MAX_SNAPSHOTS + ")");
            writeBack.flushFully();
            long[] active = map.l1().copy();
            adjustTree(active, +1); // S3: the snapshot's references counted first
            refreshCopiedFlags(); // S6: everything the active L1 reaches is shared now
            long[] copy = new long[active.length];
            for (int i = 0; i < copy.length; i++) copy[i] = active[i] & ~L2Entry.COPIED;
            long l1Off = allocRun(Math.max(1, clustersFor((long) copy.length * 8)), MetadataKind.SNAPSHOT_L1);
            writeLongs(l1Off, copy);
            Instant now = Instant.now();
            ByteBuffer extra = ByteBuffer.allocate(24).order(ByteOrder.BIG_ENDIAN).putLong(0).putLong(geo.virtualSize).putLong(0);
            SnapshotTable.Entry e = new SnapshotTable.Entry(l1Off, copy.length, table.nextId(), name, now.getEpochSecond(),
                    now.getNano() / 1000 * 1000L, 0, 0, extra.array());
            SnapshotTable next = table.with(e);
            long tOff = writeTable(next);
            writeBack.dataWritten();
            writeBack.flushFully(); // S3/S4: refcounts, flags, the L1 copy and the new table durable
            switchTable(next, tOff);
            return e.info();
        });
    }

    // ---------------------------------------------------------------- apply

    /**
     * S7: reverts the active image to snapshot {@code key}. A snapshot of another virtual size gives
     * the image that size, as qemu-img does (step 3b of S7); the L1 table keeps its length (entries
     * past the snapshot's are zero). The engine's geometry then keeps the old size, so the image
     * refuses writes until it is reopened (as after {@link Qcow2Image#resize}).
     */
    void apply(String key) throws IOException {
        exclusively(() -> {
            SnapshotTable.Entry e = table.find(key);
            if (e == null) throw notFound(key);
            long size = sizeOf(e);
            if (size < 0 || size % 512 != 0 || size > Qcow2Header.MAX_VIRTUAL_SIZE)
                throw new MetadataCorruption("snapshot '" + key + "': virtual size " + size + " is invalid");
            if (e.l1Entries() > map.l1().length() || l1EntriesFor(size) > map.l1().length())
                throw new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, filename + ": snapshot '" + key + "' needs a larger L1 table than the image's "
                        + map.l1().length() + " entries (growing the L1 table on apply is not supported)");
            writeBack.flushFully();
            long[] snap = l1Of(key);
            for (long x : snap) {
                long off = x & L2Entry.OFFSET_MASK;
                if (off != 0 && !geo.aligned(off)) throw new MetadataCorruption("snapshot '" + key + "': L2 table offset " + off + " is not cluster aligned");
            }
            adjustTree(snap, +1); // S3: counted before the active L1 names them
            writeBack.flushFully();
            long[] old = map.l1().copy();
            cache.withMeta(() -> {
                for (int i = 0; i < old.length; i++) {
                    long v = snap[i] & ~L2Entry.COPIED;
                    if (v != old[i]) map.setL1EntryLocked(i, v);
                    if ((v & L2Entry.OFFSET_MASK) != 0) overlap.markIfAbsent(v & L2Entry.OFFSET_MASK, MetadataKind.L2);
                }
                return null;
            });
            writeBack.flushFully(); // the new active L1 is durable
            if (size != geo.virtualSize) new ImageResize(file, filename, h, geo, cache, alloc, map, writeBack).writeSize(size); // S7 (3b): the snapshot's size, over the new L1 only
            adjustTree(old, -1); // S5: the old tree's references are gone on disk
            refreshCopiedFlags(); // S6
            writeBack.flushFully();
            if (size != geo.virtualSize) guard.refuse(filename + ": snapshot apply changed the virtual size; reopen it");
            return null;
        });
    }

    // ---------------------------------------------------------------- delete

    void delete(String name) throws IOException {
        exclusively(() -> {
            SnapshotTable.Entry e = table.findByName(name);
            if (e == null) throw notFound(name);
            writeBack.flushFully();
            long[] sl1 = FileReads.longs(file, e.l1Offset(), (int) e.l1Entries());
            SnapshotTable next = table.without(e);
            long tOff = next.entries().isEmpty() ? 0 : writeTable(next);
            writeBack.dataWritten();
            writeBack.flushFully(); // S4: the new table durable before the header names it
            switchTable(next, tOff);
            adjustTree(sl1, -1); // S5: the header no longer names the snapshot
            long first = geo.clusterOf(e.l1Offset());
            int n = Math.max(1, clustersFor(e.l1Entries() * 8));
            for (int c = 0; c < n; c++) adjust(first + c, -1, false, null);
            refreshCopiedFlags(); // S6: in the same flush as the decrements
            writeBack.flushFully();
            return null;
        });
    }

    // ---------------------------------------------------------------- parts

    private int clustersFor(long bytes) {
        return (int) ((bytes + cs - 1) / cs);
    }

    /** Writes {@code t} to fresh clusters; returns where. The caller syncs before the header names it. */
    private long writeTable(SnapshotTable t) throws IOException {
        byte[] b = t.serialize();
        long off = allocRun(clustersFor(b.length), MetadataKind.SNAPSHOT_TABLE);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate((long) clustersFor(b.length) * cs, 4096);
            MemorySegment.copy(b, 0, s, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, b.length);
            file.write(off, s);
        }
        return off;
    }

    private void writeLongs(long off, long[] v) throws IOException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate((long) Math.max(1, clustersFor((long) v.length * 8)) * cs, 4096);
            for (int i = 0; i < v.length; i++) s.set(CachedTable.BE_LONG, 8L * i, v[i]);
            file.write(off, s);
        }
    }

    /**
     * S4: the header names {@code next} (one synced write of nb_snapshots and snapshots_offset, bytes
     * 60..71, one sector); then the old table's clusters are freed and the image flushed.
     */
    private void switchTable(SnapshotTable next, long tOff) throws IOException {
        SnapshotTable old = table;
        long oldOff = h.snapshotsOffset;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(12);
            s.set(java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 0, next.entries().size());
            s.set(CachedTable.BE_LONG, 4, tOff);
            file.write(60, s);
            try {
                file.datasync();
            } catch (IOException ex) {
                guard.poison(ex);
                throw ex;
            }
        }
        h.nbSnapshots = next.entries().size();
        h.snapshotsOffset = tOff;
        table = next;
        if (old.bytes() > 0 && oldOff != 0) {
            cache.withMeta(() -> {
                alloc.queueFreeLocked(new HostRun(oldOff, clustersFor(old.bytes())));
                return null;
            });
        }
        writeBack.flushFully();
    }

    /** {@code n} contiguous fresh clusters (refcount 1) marked as {@code kind}; clusters skipped on the way are given back. */
    private long allocRun(int n, MetadataKind kind) throws IOException {
        List<Long> skipped = new ArrayList<>();
        long start = -1;
        int len = 0;
        while (len < n) {
            long c = cache.withMeta(() -> alloc.allocClusterLocked(null));
            if (len > 0 && c == start + (long) len * cs) {
                len++;
            } else {
                for (int k = 0; k < len; k++) skipped.add(start + (long) k * cs);
                start = c;
                len = 1;
            }
        }
        long run = start;
        cache.withMeta(() -> {
            for (long s : skipped) alloc.setRefcountLocked(geo.clusterOf(s), 0); // never referenced nor written
            for (int k = 0; k < n; k++) overlap.markLocked(run + (long) k * cs, kind);
            return null;
        });
        return run;
    }

    /**
     * Adds {@code d} (+1 or -1) to the refcount of every L2 table {@code l1} names and every cluster
     * those tables map. An increment that would overflow the refcount width fails with LIMIT after
     * taking back the increments already made (in memory only: nothing was flushed in between).
     */
    private void adjustTree(long[] l1, int d) throws IOException {
        if (d < 0) {
            walkTree(l1, d, null);
            return;
        }
        java.util.ArrayList<Long> done = new java.util.ArrayList<>();
        try {
            walkTree(l1, d, done);
        } catch (IOException | RuntimeException e) {
            for (int i = done.size() - 1; i >= 0; i--) {
                long ci = done.get(i);
                cache.withMeta(() -> alloc.decrementLocked(ci));
            }
            throw e;
        }
    }

    private void walkTree(long[] l1, int d, List<Long> done) throws IOException {
        for (long x : l1) {
            long off = x & L2Entry.OFFSET_MASK;
            if (off == 0) continue;
            CachedTable t = cache.load(off, CachedTable.Kind.L2);
            for (int j = 0; j < t.entryCount(); j++) {
                long e = t.entry(j);
                switch (geo.typeOf(e)) {
                    case L2Entry.NORMAL, L2Entry.ZERO_ALLOC -> adjust(geo.clusterOf(e & L2Entry.OFFSET_MASK), d, false, done);
                    case L2Entry.COMPRESSED_CLUSTER -> {
                        HostRange r = geo.compressedRange(e);
                        for (long c = geo.clusterOf(r.offset()); c <= geo.clusterOf(r.offset() + r.length() - 1); c++) adjust(c, d, false, done);
                    }
                    default -> {}
                }
            }
            adjust(geo.clusterOf(off), d, true, done);
        }
    }

    private void adjust(long ci, int d, boolean l2, List<Long> done) throws IOException {
        cache.withMeta(() -> {
            if (d > 0) {
                alloc.incrementLocked(ci);
                if (done != null) done.add(ci);
            } else {
                alloc.decrementLocked(ci);
                if (l2 && alloc.refcountLocked(ci) == 0) cache.discardLocked(ci << geo.clusterBits, CachedTable.Kind.L2);
            }
            return null;
        });
    }

    /** S6: OFLAG_COPIED on the active L1 entries and their L2 entries set exactly where the refcount (in memory) is 1. Idempotent. */
    private void refreshCopiedFlags() throws IOException {
        int n = map.l1().length();
        for (int i = 0; i < n; i++) {
            int l1i = i;
            long off = map.l1().get(i) & L2Entry.OFFSET_MASK;
            if (off == 0) continue;
            cache.load(off, CachedTable.Kind.L2);
            cache.withMeta(() -> {
                long cur = map.l1().get(l1i);
                long want = alloc.refcountLocked(geo.clusterOf(off)) == 1 ? cur | L2Entry.COPIED : cur & ~L2Entry.COPIED;
                if (want != cur) map.setL1EntryLocked(l1i, want);
                CachedTable t = cache.getLocked(off, CachedTable.Kind.L2);
                for (int j = 0; j < t.entryCount(); j++) {
                    long e = t.entry(j);
                    int type = geo.typeOf(e);
                    if (type != L2Entry.NORMAL && type != L2Entry.ZERO_ALLOC) continue;
                    long w = alloc.refcountLocked(geo.clusterOf(e & L2Entry.OFFSET_MASK)) == 1 ? e | L2Entry.COPIED : e & ~L2Entry.COPIED;
                    if (w != e) t.setEntry(j, w);
                }
                return null;
            });
        }
    }
}
