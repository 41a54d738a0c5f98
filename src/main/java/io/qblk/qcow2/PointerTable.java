package io.qblk.qcow2;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.BitSet;

/**
 * A table of 8-byte big-endian cluster pointers held in memory whole (the L1 table, the refcount
 * table), with the clusters changed since the last flush. Entries are read lock-free with acquire
 * semantics; they change only under the metadata lock, published with release semantics.
 */
final class PointerTable {
    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);

    private final int entriesPerCluster;
    private final long[] entries;
    private final BitSet dirty = new BitSet();

    PointerTable(long[] entries, int clusterSize) {
        this.entries = entries;
        this.entriesPerCluster = clusterSize / 8;
    }

    int length() { return entries.length; }

    long get(int i) { return (long) LONGS.getAcquire(entries, i); }

    /** Under the metadata lock: sets entry i and marks its cluster for the next flush. */
    void setLocked(int i, long v) {
        LONGS.setRelease(entries, i, v);
        dirty.set(i / entriesPerCluster);
    }

    /** Under the metadata lock: sets entry i of a table not yet referenced by anything on disk (written whole). */
    void setUntracked(int i, long v) {
        LONGS.setRelease(entries, i, v);
    }

    /** A bigger table with the same entries (and nothing marked dirty: a relocated table is written whole). */
    PointerTable grown(int newLength) {
        return new PointerTable(java.util.Arrays.copyOf(entries, newLength), entriesPerCluster * 8);
    }

    long[] copy() { return entries.clone(); }

    /** Under the metadata lock: the dirty clusters, now marked clean (give them back with {@link #restoreDirtyLocked}). */
    BitSet takeDirtyLocked() {
        BitSet d = (BitSet) dirty.clone();
        dirty.clear();
        return d;
    }

    void restoreDirtyLocked(BitSet d) { dirty.or(d); }

    /** On-disk bytes of table cluster {@code c} (the last one may be short). */
    MemorySegment clusterBytes(SegmentAllocator arena, int c) {
        int from = c * entriesPerCluster;
        return bytes(arena, from, Math.min(entriesPerCluster, entries.length - from));
    }

    /** On-disk bytes of the whole table. */
    MemorySegment allBytes(SegmentAllocator arena) { return bytes(arena, 0, entries.length); }

    private MemorySegment bytes(SegmentAllocator arena, int from, int n) {
        MemorySegment s = arena.allocate(Math.max(8L * n, 8), 4096).asSlice(0, 8L * n);
        for (int i = 0; i < n; i++) s.set(CachedTable.BE_LONG, 8L * i, get(from + i));
        return s;
    }
}
