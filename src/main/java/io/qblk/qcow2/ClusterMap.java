package io.qblk.qcow2;

import java.io.IOException;

/**
 * Guest cluster → L2 entry: the active L1 table (in memory whole) and the L2 tables (through the
 * {@link MetadataCache}). Lookups are lock-free (entries read with acquire semantics); changes
 * happen under the metadata lock. Rule R3: a new L2 table is created fresh (phase A writes it) and
 * its L1 entry is only marked dirty (phase B writes it).
 */
final class ClusterMap {
    private final Geometry geo;
    private final MetadataCache cache;
    private final RefcountAllocator alloc;
    private final PointerTable l1;
    private final long l1Offset;
    private final int l2Bits, l2Mask;

    ClusterMap(Geometry geo, MetadataCache cache, RefcountAllocator alloc, long[] l1Entries, long l1Offset) {
        this.geo = geo;
        this.cache = cache;
        this.alloc = alloc;
        this.l1 = new PointerTable(l1Entries, geo.clusterSize);
        this.l1Offset = l1Offset;
        this.l2Bits = geo.l2Bits;
        this.l2Mask = geo.l2Mask;
    }

    /** Lock-free: the L2 entry of guest cluster g (0 when no L2 table maps it). */
    long lookup(long g) throws IOException {
        long off = l1.get((int) (g >>> l2Bits)) & L2Entry.OFFSET_MASK;
        if (off == 0) return 0;
        return cache.l2(off).entry((int) (g & l2Mask));
    }

    private static final L2Entry.Pair NONE = new L2Entry.Pair(0, 0);

    /** Extended L2, lock-free: the entry and subcluster bitmap of guest cluster g (both 0 when no L2 table maps it). */
    L2Entry.Pair lookupPair(long g) throws IOException {
        long off = l1.get((int) (g >>> l2Bits)) & L2Entry.OFFSET_MASK;
        if (off == 0) return NONE;
        return cache.l2(off).pair((int) (g & l2Mask));
    }

    /**
     * How many bytes from guest cluster g on (whose entry maps host cluster {@code host}) lie in
     * host clusters that follow each other: {@code first} bytes of g, then whole clusters while the
     * next guest cluster maps the next host cluster (and, with {@code needCopied}, is OFLAG_COPIED;
     * with extended L2, has every subcluster allocated), at most {@code remaining} bytes. One pread/pwrite serves the run.
     */
    long contiguousRun(long g, long host, long first, long remaining, boolean needCopied) throws IOException {
        int cs = geo.clusterSize;
        long run = first;
        long next = g + 1;
        while (run < remaining) {
            long e;
            if (geo.extendedL2) {
                L2Entry.Pair p = lookupPair(next);
                if ((p.bitmap() & L2Entry.ALLOC_MASK) != L2Entry.ALLOC_MASK || (p.bitmap() >>> 32) != 0) break;
                e = p.entry();
            } else e = lookup(next);
            if (geo.typeOf(e) != L2Entry.NORMAL || (needCopied && (e & L2Entry.COPIED) == 0)
                    || (e & L2Entry.OFFSET_MASK) != host + ((next - g) << geo.clusterBits)) break;
            run += Math.min(cs, remaining - run);
            next++;
        }
        return run;
    }

    /** True when no L2 table covers guest cluster g. */
    boolean unmappedL2(long g) {
        return (l1.get(geo.l1Index(g)) & L2Entry.OFFSET_MASK) == 0;
    }

    /**
     * Under meta: the L2 table for guest cluster g, allocating an empty one when the L1 entry is 0,
     * and copying a shared one (L1 entry without OFLAG_COPIED: an internal snapshot references it
     * too) before anything changes in it. The returned table is always this image's own.
     */
    CachedTable l2ForWriteLocked(long g) throws IOException {
        int l1i = geo.l1Index(g);
        long l1e = l1.get(l1i);
        long off = l1e & L2Entry.OFFSET_MASK;
        if (off == 0) {
            long c = alloc.allocClusterLocked(MetadataKind.L2);
            CachedTable t = cache.addFreshLocked(c, CachedTable.Kind.L2);
            l1.setLocked(l1i, c | L2Entry.COPIED);
            return t;
        }
        CachedTable t = cache.getLocked(off, CachedTable.Kind.L2);
        if ((l1e & L2Entry.COPIED) != 0) return t;
        return L2CopyOnWrite.copyLocked(geo, t, l1i, l1, alloc, cache);
    }

    /** Under meta: sets an L1 entry (check's repair of OFLAG_COPIED). */
    void setL1EntryLocked(int i, long v) {
        l1.setLocked(i, v);
    }

    PointerTable l1() { return l1; }

    long l1Offset() { return l1Offset; }
}
