package io.qblk.qcow2;

/**
 * Bit layout of an L1 or L2 table entry (qcow2 spec, "Cluster mapping"); pure functions, no I/O.
 *
 * <pre>
 *  63 COPIED   62 COMPRESSED   61..9 host offset (standard)   0 ZERO (version 3)
 *  compressed: bits x-1..0 host byte offset, 61..x additional 512-byte sectors, x = 62 - (cluster_bits - 8)
 * </pre>
 *
 * <p>Extended L2 entries (incompatible feature bit 4) are 128 bits: the standard 64-bit entry (its
 * bit 0 reserved) followed by a 64-bit subcluster bitmap, 32 subclusters per cluster: bit s
 * (0..31) = subcluster s allocated, bit 32+s = subcluster s reads as zero. Both set is corruption.
 * A compressed cluster's bitmap must be 0.
 */
final class L2Entry {
    static final long OFFSET_MASK = 0x00fffffffffffe00L;
    static final long COPIED = 1L << 63;
    static final long COMPRESSED = 1L << 62;
    static final long ZERO_FLAG = 1L;

    /** What an entry maps its guest cluster to. */
    static final int UNALLOCATED = 0, NORMAL = 1, ZERO_PLAIN = 2, ZERO_ALLOC = 3, COMPRESSED_CLUSTER = 4;

    /** Subclusters per cluster with extended L2 entries. */
    static final int SUBCLUSTERS = 32;
    static final long ALLOC_MASK = 0xffffffffL;
    static final long ALL_ZERO = ALLOC_MASK << 32;

    /** What one subcluster of an extended entry reads as. */
    static final int SUB_UNALLOCATED = 0, SUB_DATA = 1, SUB_ZERO = 2, SUB_INVALID = 3;

    private L2Entry() {}

    /** An extended L2 entry: the standard entry and its subcluster bitmap. */
    record Pair(long entry, long bitmap) {}

    /** Bitmap bits of subclusters [from, to) (allocation half; shift left 32 for the zero half). */
    static long subRange(int from, int to) {
        return to - from >= 32 ? ALLOC_MASK : ((1L << (to - from)) - 1) << from;
    }

    /** What subcluster s of a (non-compressed) extended entry with bitmap {@code bm} reads as. */
    static int subType(long bm, int s) {
        boolean a = (bm >>> s & 1) != 0, z = (bm >>> (32 + s) & 1) != 0;
        if (a && z) return SUB_INVALID;
        return a ? SUB_DATA : z ? SUB_ZERO : SUB_UNALLOCATED;
    }

    /** Subclusters from s on with the same {@link #subType} (at least 1, at most up to {@code end}). */
    static int subRun(long bm, int s, int end) {
        int t = subType(bm, s), n = 1;
        while (s + n < end && subType(bm, s + n) == t) n++;
        return n;
    }

    /**
     * Null when the bitmap is a valid one for entry e, else what is wrong with it (alloc and zero
     * both set, alloc bits on an unallocated cluster, any bit on a compressed cluster).
     */
    static String badBitmap(long e, long bm) {
        if ((e & COMPRESSED) != 0) return bm != 0 ? "compressed cluster with a non-zero subcluster bitmap" : null;
        if (((bm >>> 32) & bm & ALLOC_MASK) != 0) return "subclusters both allocated and zero";
        if ((e & OFFSET_MASK) == 0 && (bm & ALLOC_MASK) != 0) return "allocated subclusters in an unallocated cluster";
        return null;
    }

    static int type(long e, int version) {
        if ((e & COMPRESSED) != 0) return COMPRESSED_CLUSTER;
        long off = e & OFFSET_MASK;
        if (version >= 3 && (e & ZERO_FLAG) != 0) return off != 0 ? ZERO_ALLOC : ZERO_PLAIN;
        return off != 0 ? NORMAL : UNALLOCATED;
    }

    /** The host cluster offset of a standard (not compressed) entry. */
    static long offset(long e) {
        return e & OFFSET_MASK;
    }

    static boolean copied(long e) {
        return (e & COPIED) != 0;
    }

    /** The entry of a compressed cluster whose data starts at host byte {@code off} and takes {@code len} bytes. */
    static long compressed(long off, int len, int clusterBits) {
        int x = 62 - (clusterBits - 8);
        long sectors = ((off + len - 1) >>> 9) - (off >>> 9); // additional sectors after the first
        return COMPRESSED | (sectors << x) | off;
    }

    /** Where a compressed cluster's data lies in the file. */
    static HostRange compressedRange(long e, int clusterBits) {
        int x = 62 - (clusterBits - 8);
        long off = e & ((1L << x) - 1);
        long sectors = (e & ~COPIED & ~COMPRESSED) >>> x;
        long len = (sectors + 1) * 512 - (off & 511);
        return new HostRange(off, len);
    }
}
