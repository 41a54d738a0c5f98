package io.qblk.qcow2;

/**
 * Parameters of a new qcow2 image (qemu-img create -f qcow2 -o ...).
 *
 * @param size          virtual size in bytes
 * @param version       2 (compat=0.10) or 3 (compat=1.1)
 * @param clusterSize   512 .. 2 MiB, a power of two
 * @param refcountBits  1 .. 64, a power of two; version 2 only allows 16
 * @param lazyRefcounts sets the lazy-refcounts compatible feature bit (version 3 only)
 * @param backingFile   backing file name stored in the header exactly as given (relative names resolve
 *                      against the image's directory when opened); null for none
 * @param backingFormat backing format header extension ("qcow2", "raw"); null writes none
 * @param compression   codec of compressed clusters (header compression_type); zstd needs version 3
 * @param extendedL2    128-bit L2 entries with 32 subclusters per cluster (version 3, cluster size at least 16k)
 */
public record CreateOptions(long size, int version, int clusterSize, int refcountBits, Preallocation preallocation,
        boolean lazyRefcounts, String backingFile, String backingFormat, CompressionType compression, boolean extendedL2) {

    public CreateOptions {
        if (preallocation == null) throw new IllegalArgumentException("preallocation must not be null");
        if (compression == null) throw new IllegalArgumentException("compression must not be null");
    }

    public CreateOptions(long size, int version, int clusterSize, int refcountBits, Preallocation preallocation, boolean lazyRefcounts,
            String backingFile, String backingFormat) {
        this(size, version, clusterSize, refcountBits, preallocation, lazyRefcounts, backingFile, backingFormat, CompressionType.ZLIB, false);
    }

    public CreateOptions(long size, int version, int clusterSize, int refcountBits, Preallocation preallocation, boolean lazyRefcounts) {
        this(size, version, clusterSize, refcountBits, preallocation, lazyRefcounts, null, null);
    }

    /** qemu-img's defaults: compat 1.1, 64 KiB clusters, 16-bit refcounts, no preallocation. */
    public static CreateOptions defaults(long size) {
        return new CreateOptions(size, 3, 65536, 16, Preallocation.OFF, false);
    }

    public CreateOptions withSize(long s) { return new CreateOptions(s, version, clusterSize, refcountBits, preallocation, lazyRefcounts, backingFile, backingFormat, compression, extendedL2); }
    public CreateOptions withVersion(int v) { return new CreateOptions(size, v, clusterSize, refcountBits, preallocation, lazyRefcounts, backingFile, backingFormat, compression, extendedL2); }
    /** "0.10" = version 2, "1.1" (or "v3") = version 3. */
    public CreateOptions withCompat(String compat) {
        return switch (compat) {
            case "0.10", "v2" -> withVersion(2);
            case "1.1", "v3" -> withVersion(3);
            default -> throw new IllegalArgumentException("compat must be 0.10 or 1.1: " + compat);
        };
    }
    public CreateOptions withClusterSize(int c) { return new CreateOptions(size, version, c, refcountBits, preallocation, lazyRefcounts, backingFile, backingFormat, compression, extendedL2); }
    public CreateOptions withRefcountBits(int r) { return new CreateOptions(size, version, clusterSize, r, preallocation, lazyRefcounts, backingFile, backingFormat, compression, extendedL2); }
    public CreateOptions withPreallocation(Preallocation p) { return new CreateOptions(size, version, clusterSize, refcountBits, p, lazyRefcounts, backingFile, backingFormat, compression, extendedL2); }
    public CreateOptions withLazyRefcounts(boolean l) { return new CreateOptions(size, version, clusterSize, refcountBits, preallocation, l, backingFile, backingFormat, compression, extendedL2); }
    public CreateOptions withExtendedL2(boolean x) { return new CreateOptions(size, version, clusterSize, refcountBits, preallocation, lazyRefcounts, backingFile, backingFormat, compression, x); }
    public CreateOptions withCompression(CompressionType c) { return new CreateOptions(size, version, clusterSize, refcountBits, preallocation, lazyRefcounts, backingFile, backingFormat, c, extendedL2); }

    /** An overlay: the header names {@code file} (stored as given) and, when not null, its {@code format}. */
    public CreateOptions withBacking(String file, String format) {
        return new CreateOptions(size, version, clusterSize, refcountBits, preallocation, lazyRefcounts, file, format, compression, extendedL2);
    }

    /** Throws IllegalArgumentException naming the first bad option. */
    public void validate() {
        if (version != 2 && version != 3) throw new IllegalArgumentException("compat must be 0.10 (version 2) or 1.1 (version 3), got version " + version);
        if (clusterSize < 512 || clusterSize > (2 << 20) || Integer.bitCount(clusterSize) != 1)
            throw new IllegalArgumentException("cluster_size must be a power of two between 512 and 2M: " + clusterSize);
        if (refcountBits < 1 || refcountBits > 64 || Integer.bitCount(refcountBits) != 1)
            throw new IllegalArgumentException("refcount_bits must be a power of two between 1 and 64: " + refcountBits);
        if (version == 2 && refcountBits != 16)
            throw new IllegalArgumentException("refcount_bits other than 16 needs compat=1.1 (version 3)");
        if (version == 2 && lazyRefcounts)
            throw new IllegalArgumentException("lazy_refcounts needs compat=1.1 (version 3)");
        if (version == 2 && compression != CompressionType.ZLIB)
            throw new IllegalArgumentException("Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)");
        if (extendedL2 && version == 2) throw new IllegalArgumentException("Extended L2 entries are only supported with compatibility level 1.1 and above (use version=v3 or greater)");
        if (extendedL2 && clusterSize < 16384) throw new IllegalArgumentException("Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
        if (size < 0) throw new IllegalArgumentException("size must not be negative: " + size);
        if (backingFile != null && (backingFile.isEmpty() || backingFile.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > 1023))
            throw new IllegalArgumentException("backing file name must be 1..1023 bytes");
        if (backingFormat != null && backingFile == null) throw new IllegalArgumentException("backing format given without a backing file");
        if (backingFile != null && preallocation != Preallocation.OFF)
            throw new IllegalArgumentException("preallocation is not supported with a backing file");
        long maxL1Entries = Qcow2Header.MAX_L1_ENTRIES;
        long bytesPerL2 = (long) clusterSize * (clusterSize / (extendedL2 ? 16 : 8));
        if (Long.divideUnsigned(size + bytesPerL2 - 1, bytesPerL2) > maxL1Entries || size > Qcow2Header.MAX_VIRTUAL_SIZE)
            throw new IllegalArgumentException("size " + size + " is too large for cluster_size " + clusterSize);
    }
}
