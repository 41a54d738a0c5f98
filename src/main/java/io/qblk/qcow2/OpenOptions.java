package io.qblk.qcow2;

import io.qblk.io.AioMode;
import io.qblk.io.CacheMode;
import java.util.Objects;

/**
 * How to open an image.
 *
 * @param readOnly      refuse writes; the file is opened read-only
 * @param cacheBytes    memory budget for cached L2 tables and refcount blocks (at least a few clusters are always kept)
 * @param backingPolicy which backing files (named by the untrusted header) may be opened; applies to the whole chain
 * @param cacheMode     page-cache use of the image files (and its backing chain) opened by path; default WRITEBACK
 * @param aio           how their I/O is issued; default POSIX
 * @param metadataWrite when changed metadata reaches the file; default WRITEBACK (see {@link MetadataWrite})
 * @param discard       whether freed clusters are punched out of the image file; default UNMAP (see {@link DiscardMode})
 */
public record OpenOptions(boolean readOnly, long cacheBytes, BackingPolicy backingPolicy, CacheMode cacheMode, AioMode aio,
                          MetadataWrite metadataWrite, DiscardMode discard) {
    public static final long DEFAULT_CACHE_BYTES = 32L << 20;

    public OpenOptions {
        if (cacheBytes <= 0) throw new IllegalArgumentException("cacheBytes must be positive: " + cacheBytes);
        Objects.requireNonNull(backingPolicy, "backingPolicy");
        Objects.requireNonNull(cacheMode, "cacheMode");
        Objects.requireNonNull(aio, "aio");
        Objects.requireNonNull(metadataWrite, "metadataWrite");
        Objects.requireNonNull(discard, "discard");
    }

    public OpenOptions(boolean readOnly, long cacheBytes, BackingPolicy backingPolicy) {
        this(readOnly, cacheBytes, backingPolicy, CacheMode.WRITEBACK, AioMode.POSIX, MetadataWrite.WRITEBACK, DiscardMode.UNMAP);
    }

    public OpenOptions(boolean readOnly, long cacheBytes) {
        this(readOnly, cacheBytes, BackingPolicy.REGULAR_FILES);
    }

    public static OpenOptions defaults() {
        return new OpenOptions(false, DEFAULT_CACHE_BYTES);
    }

    public OpenOptions withReadOnly(boolean ro) {
        return new OpenOptions(ro, cacheBytes, backingPolicy, cacheMode, aio, metadataWrite, discard);
    }

    public OpenOptions withCacheBytes(long bytes) {
        return new OpenOptions(readOnly, bytes, backingPolicy, cacheMode, aio, metadataWrite, discard);
    }

    public OpenOptions withBackingPolicy(BackingPolicy policy) {
        return new OpenOptions(readOnly, cacheBytes, policy, cacheMode, aio, metadataWrite, discard);
    }

    public OpenOptions withCacheMode(CacheMode mode) {
        return new OpenOptions(readOnly, cacheBytes, backingPolicy, mode, aio, metadataWrite, discard);
    }

    public OpenOptions withAio(AioMode mode) {
        return new OpenOptions(readOnly, cacheBytes, backingPolicy, cacheMode, mode, metadataWrite, discard);
    }

    public OpenOptions withMetadataWrite(MetadataWrite mode) {
        return new OpenOptions(readOnly, cacheBytes, backingPolicy, cacheMode, aio, mode, discard);
    }

    public OpenOptions withDiscard(DiscardMode mode) {
        return new OpenOptions(readOnly, cacheBytes, backingPolicy, cacheMode, aio, metadataWrite, mode);
    }
}
