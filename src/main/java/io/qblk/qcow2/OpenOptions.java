package io.qblk.qcow2;

import java.util.Objects;

/**
 * How to open an image.
 *
 * @param readOnly      refuse writes; the file is opened read-only
 * @param cacheBytes    memory budget for cached L2 tables and refcount blocks (at least a few clusters are always kept)
 * @param backingPolicy which backing files (named by the untrusted header) may be opened; applies to the whole chain
 */
public record OpenOptions(boolean readOnly, long cacheBytes, BackingPolicy backingPolicy) {
    public static final long DEFAULT_CACHE_BYTES = 32L << 20;

    public OpenOptions {
        if (cacheBytes <= 0) throw new IllegalArgumentException("cacheBytes must be positive: " + cacheBytes);
        Objects.requireNonNull(backingPolicy, "backingPolicy");
    }

    public OpenOptions(boolean readOnly, long cacheBytes) {
        this(readOnly, cacheBytes, BackingPolicy.ANY);
    }

    public static OpenOptions defaults() {
        return new OpenOptions(false, DEFAULT_CACHE_BYTES);
    }

    public OpenOptions withReadOnly(boolean ro) {
        return new OpenOptions(ro, cacheBytes, backingPolicy);
    }

    public OpenOptions withCacheBytes(long bytes) {
        return new OpenOptions(readOnly, bytes, backingPolicy);
    }

    public OpenOptions withBackingPolicy(BackingPolicy policy) {
        return new OpenOptions(readOnly, cacheBytes, policy);
    }
}
