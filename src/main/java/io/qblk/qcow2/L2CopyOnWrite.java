package io.qblk.qcow2;

import java.io.IOException;

/**
 * Copy-on-write of an L2 table shared with internal snapshots (an active L1 entry without
 * OFLAG_COPIED). Rules S1 and S2 of docs/ordering.md:
 *
 * <ul>
 * <li>S1 (= R3 for the copy): the copy is a fresh table (phase A writes and syncs it) and only its L1
 * entry is marked dirty (phase B writes it), so the L1 entry never points at an unwritten copy.
 * The data clusters the copy references keep their refcounts: qcow2 counts one reference per path
 * from an L1 table, and the active L1 still reaches each of them exactly once.</li>
 * <li>S2 (= R4 for the original): the original's refcount is only queued for decrement, so it drops
 * after the flush that made the new L1 entry durable; a crash before leaves a leak at worst.</li>
 * </ul>
 * The entries are copied as they are: they lack OFLAG_COPIED, because their clusters are still
 * shared, so every write through the copy copies the data cluster too (ClusterWriter's allocating
 * write). An L1 entry without the flag whose table has refcount 1 is not shared: the flag is just
 * set (the table is used in place, nothing is copied).
 */
final class L2CopyOnWrite {
    private L2CopyOnWrite() {}

    /** Under meta: this image's own copy of {@code shared}, L1 entry {@code l1i}; may throw NeedLoad before changing anything. */
    static CachedTable copyLocked(Geometry geo, CachedTable shared, int l1i, PointerTable l1, RefcountAllocator alloc, MetadataCache cache) throws IOException {
        long refs = alloc.refcountLocked(geo.clusterOf(shared.offset));
        if (refs == 1) {
            l1.setLocked(l1i, shared.offset | L2Entry.COPIED);
            return shared;
        }
        long c = alloc.allocClusterLocked(MetadataKind.L2); // R2: refcount 1 before the L1 entry names it
        CachedTable copy = cache.addFreshLocked(c, CachedTable.Kind.L2);
        // entry by entry; with extended L2 each entry with its subcluster bitmap (two words)
        for (int i = 0; i < shared.entryCount(); i++) {
            if (shared.stride == 2) copy.setPair(i, shared.entry(i), shared.bitmapLocked(i));
            else copy.setEntry(i, shared.entry(i));
        }
        l1.setLocked(l1i, c | L2Entry.COPIED);
        alloc.queueFreeLocked(new HostRun(shared.offset, 1)); // S2: refcount - 1 after the new L1 entry is durable
        return copy;
    }
}
