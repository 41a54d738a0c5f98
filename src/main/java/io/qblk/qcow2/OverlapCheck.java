package io.qblk.qcow2;

import java.util.Arrays;
import java.util.HashMap;

/**
 * What each metadata cluster of the file holds (header, L1, refcount table and blocks, L2 tables,
 * snapshot table and L1s, bitmap directory), so that no write lands on metadata it was not meant
 * for: a metadata write of kind K only on clusters known as K (checked in the flush snapshot), a
 * guest data write on no metadata at all, and the allocator never hands out a cluster known as
 * metadata. Guarded by the metadata lock (see docs/ordering.md, "Overlap check").
 *
 * <p>The data-write check on the fast path ({@link #dataOverlap}) is lock-free: it searches a sorted
 * array of the metadata clusters, published through a volatile field and dropped (set to null) by
 * every change of the map, all of which happen under the metadata lock (or while opening, before
 * any request). A write that finds no snapshot, or a hit, takes the lock, rebuilds the snapshot and
 * decides there, so the answer is the locked one's at a point between the lookup and the write.
 */
final class OverlapCheck {
    private final HashMap<Long, MetadataKind> kinds = new HashMap<>();
    private final MetadataCache cache;
    private final Geometry geo;
    /** The keys of {@link #kinds}, sorted; null after a change until the next locked check rebuilds it. */
    private volatile long[] sorted;

    OverlapCheck(MetadataCache cache, Geometry geo) {
        this.cache = cache;
        this.geo = geo;
    }

    /** Under meta (or while opening): what the cluster at {@code off} holds, or null. */
    MetadataKind kindAt(long off) { return kinds.get(off); }

    void markLocked(long off, MetadataKind k) {
        kinds.put(off, k);
        sorted = null;
    }

    /** While opening: first come wins, later conflicts surface as overlaps. */
    void markIfAbsent(long off, MetadataKind k) {
        kinds.putIfAbsent(off, k);
        sorted = null;
    }

    void markRange(long off, long len, MetadataKind k) {
        for (long c = geo.clusterStart(off); c < off + len; c += geo.clusterSize) kinds.putIfAbsent(c, k);
        sorted = null;
    }

    void forgetLocked(long off) {
        kinds.remove(off);
        sorted = null;
    }

    /** Under meta: forgets everything (check's rebuild marks the whole layout again). */
    void clearLocked() {
        kinds.clear();
        sorted = null;
    }

    /**
     * Null if a guest data write to the clusters of [host, host+len) hits no live metadata, else
     * why not. Lock-free when the published snapshot is current and shows no metadata cluster in the
     * range (one binary search); otherwise decided under the metadata lock.
     */
    String dataOverlap(long host, long len) {
        long[] s = sorted;
        if (s != null && !anyIn(s, geo.clusterStart(host), host + len)) return null;
        cache.lock();
        try {
            if (sorted == null) sorted = snapshotLocked();
            for (long c = geo.clusterStart(host); c < host + len; c += geo.clusterSize) {
                MetadataKind k = kinds.get(c);
                if (k != null) return "guest data write at host offset " + c + " would overwrite the " + k.label;
            }
            return null;
        } finally {
            cache.unlock();
        }
    }

    /** True when the sorted array {@code s} holds a value in [from, to). */
    private static boolean anyIn(long[] s, long from, long to) {
        int i = Arrays.binarySearch(s, from);
        if (i >= 0) return true;
        i = -i - 1; // the first value above from
        return i < s.length && s[i] < to;
    }

    private long[] snapshotLocked() {
        long[] s = new long[kinds.size()];
        int i = 0;
        for (long k : kinds.keySet()) s[i++] = k;
        Arrays.sort(s);
        return s;
    }

    /** Under meta: null if a data write to the host cluster {@code host} hits no metadata, else why not. */
    String dataOverlapLocked(long host) {
        MetadataKind k = kinds.get(host);
        return k == null ? null : "guest data write at host offset " + host + " would overwrite the " + k.label;
    }

    /** Under meta: null if writing {@code kind} at [off, off+len) hits no other live metadata, else why not. */
    String metadataOverlapLocked(long off, long len, MetadataKind kind) {
        for (long c = geo.clusterStart(off); c < off + len; c += geo.clusterSize) {
            MetadataKind k = kinds.get(c);
            if (k != kind)
                return "metadata overlap: writing the " + kind.label + " at " + off + " would overwrite "
                        + (k == null ? "a cluster not known as " + kind.label : "the " + k.label) + " at " + c;
        }
        return null;
    }
}
