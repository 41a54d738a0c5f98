package io.qblk.qcow2;

/**
 * How to open an image.
 *
 * @param readOnly   refuse writes; the file is opened read-only
 * @param cacheBytes memory budget for cached L2 tables and refcount blocks (at least a few clusters are always kept)
 */
public record OpenOptions(boolean readOnly, long cacheBytes) {
    public static final long DEFAULT_CACHE_BYTES = 32L << 20;

    public OpenOptions {
        if (cacheBytes <= 0) throw new IllegalArgumentException("cacheBytes must be positive: " + cacheBytes);
    }

    public static OpenOptions defaults() {
        return new OpenOptions(false, DEFAULT_CACHE_BYTES);
    }

    public OpenOptions withReadOnly(boolean ro) {
        return new OpenOptions(ro, cacheBytes);
    }

    public OpenOptions withCacheBytes(long bytes) {
        return new OpenOptions(readOnly, bytes);
    }
}
