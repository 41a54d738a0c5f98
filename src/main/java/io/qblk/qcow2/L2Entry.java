package io.qblk.qcow2;

/**
 * Bit layout of an L1 or L2 table entry (qcow2 spec, "Cluster mapping"); pure functions, no I/O.
 *
 * <pre>
 *  63 COPIED   62 COMPRESSED   61..9 host offset (standard)   0 ZERO (version 3)
 *  compressed: bits x-1..0 host byte offset, 61..x additional 512-byte sectors, x = 62 - (cluster_bits - 8)
 * </pre>
 */
final class L2Entry {
    static final long OFFSET_MASK = 0x00fffffffffffe00L;
    static final long COPIED = 1L << 63;
    static final long COMPRESSED = 1L << 62;
    static final long ZERO_FLAG = 1L;

    /** What an entry maps its guest cluster to. */
    static final int UNALLOCATED = 0, NORMAL = 1, ZERO_PLAIN = 2, ZERO_ALLOC = 3, COMPRESSED_CLUSTER = 4;

    private L2Entry() {}

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
