package io.qblk.qcow2;

import java.util.HashMap;

/**
 * What each metadata cluster of the file holds (header, L1, refcount table and blocks, L2 tables,
 * snapshot table and L1s, bitmap directory), so that no write lands on metadata it was not meant
 * for: a metadata write of kind K only on clusters known as K (checked in the flush snapshot), a
 * guest data write on no metadata at all, and the allocator never hands out a cluster known as
 * metadata. Guarded by the metadata lock (see docs/ordering.md, "Overlap check").
 */
final class OverlapCheck {
    private final HashMap<Long, MetadataKind> kinds = new HashMap<>();
    private final MetadataCache cache;
    private final Geometry geo;

    OverlapCheck(MetadataCache cache, Geometry geo) {
        this.cache = cache;
        this.geo = geo;
    }

    /** Under meta (or while opening): what the cluster at {@code off} holds, or null. */
    MetadataKind kindAt(long off) { return kinds.get(off); }

    void markLocked(long off, MetadataKind k) { kinds.put(off, k); }

    /** While opening: first come wins, later conflicts surface as overlaps. */
    void markIfAbsent(long off, MetadataKind k) { kinds.putIfAbsent(off, k); }

    void markRange(long off, long len, MetadataKind k) {
        for (long c = geo.clusterStart(off); c < off + len; c += geo.clusterSize) kinds.putIfAbsent(c, k);
    }

    void forgetLocked(long off) { kinds.remove(off); }

    /** Under meta: forgets everything (check's rebuild marks the whole layout again). */
    void clearLocked() { kinds.clear(); }

    /**
     * Null if a guest data write to the clusters of [host, host+len) hits no live metadata, else
     * why not. Takes the metadata lock: the map is a plain HashMap changed by allocations.
     */
    String dataOverlap(long host, long len) {
        cache.lock();
        try {
            for (long c = geo.clusterStart(host); c < host + len; c += geo.clusterSize) {
                MetadataKind k = kinds.get(c);
                if (k != null) return "guest data write at host offset " + c + " would overwrite the " + k.label;
            }
            return null;
        } finally {
            cache.unlock();
        }
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
