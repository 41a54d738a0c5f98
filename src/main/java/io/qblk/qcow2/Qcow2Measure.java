package io.qblk.qcow2;

import io.qblk.io.IoBackend;
import io.qblk.io.PosixFileBackend;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;

/**
 * Sizes a qcow2 file needs, computed as qemu-img measure computes them, so both tools give the same
 * figures: the metadata of a fully allocated image (header, L2 tables, L1 table, refcount table and
 * blocks for all of it), and the space persistent bitmaps copied from a source would take.
 */
public final class Qcow2Measure {
    private Qcow2Measure() {}

    /**
     * Bytes of a fully allocated image of {@code virtualSize} (rounded up to the cluster): data plus
     * header, L2 tables (16-byte entries with {@code extendedL2}), L1 table and the refcount
     * structures covering all of them.
     */
    public static long fullyAllocated(long virtualSize, int clusterSize, int refcountBits, boolean extendedL2) {
        long cs = clusterSize;
        long aligned = (virtualSize + cs - 1) / cs * cs;
        long meta = cs; // header
        int entryBytes = extendedL2 ? 16 : 8;
        long l2PerCluster = cs / entryBytes;
        long l2Entries = roundUp(aligned / cs, l2PerCluster);
        meta += l2Entries * entryBytes;
        long l1Entries = roundUp(l2Entries * entryBytes / cs, cs / 8);
        meta += l1Entries * 8;
        meta += refcountMetadata((meta + aligned) / cs, cs, Integer.numberOfTrailingZeros(refcountBits));
        return meta + aligned;
    }

    /** Refcount table and block bytes needed to count {@code clusters} clusters plus themselves. */
    static long refcountMetadata(long clusters, long cs, int refcountOrder) {
        long perTableCluster = cs / 8;
        long perBlock = cs * 8 / (1L << refcountOrder);
        long table = 0, blocks = 0, n = 0, last;
        do {
            last = n;
            blocks = divRoundUp(clusters + table + blocks, perBlock);
            table = divRoundUp(blocks, perTableCluster);
            n = clusters + blocks + table;
        } while (n != last);
        return (blocks + table) * cs;
    }

    /**
     * Bytes the persistent bitmaps of the qcow2 image {@code file} would take in an image with
     * {@code clusterSize}: each bitmap fully allocated plus its bitmap table, and the bitmap directory.
     * 0 for an image without bitmaps (or whose bitmaps an older writer invalidated: autoclear bit clear).
     */
    public static long bitmapsSize(Path file, int clusterSize) throws IOException {
        try (IoBackend f = PosixFileBackend.open(file, true)) {
            long fsize = f.size();
            byte[] probe = FileReads.bytes(f, 0, (int) Math.min(Qcow2Header.PROBE_BYTES, fsize));
            if (probe.length < Qcow2Header.PROBE_BYTES) probe = java.util.Arrays.copyOf(probe, Qcow2Header.PROBE_BYTES);
            int bits = Qcow2Header.clusterBitsOf(probe, fsize);
            Qcow2Header h = Qcow2Header.parse(FileReads.bytes(f, 0, (int) Math.min(1 << bits, fsize)), fsize);
            if (h.nbBitmaps == 0 || (h.autoclear & 1) == 0) return 0;
            ByteBuffer dir = ByteBuffer.wrap(FileReads.bytes(f, h.bitmapDirectoryOffset, (int) h.bitmapDirectorySize))
                    .order(ByteOrder.BIG_ENDIAN);
            long cs = clusterSize, total = 0, dirBytes = 0;
            int pos = 0;
            for (int i = 0; i < h.nbBitmaps; i++) {
                if (pos + 24 > dir.capacity()) throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "bitmap directory entry " + i + " runs past the directory");
                int granularityBits = dir.get(pos + 17) & 0xff;
                int nameSize = dir.getShort(pos + 18) & 0xffff;
                long extra = Integer.toUnsignedLong(dir.getInt(pos + 20));
                if (granularityBits < 9 || granularityBits > 31)
                    throw new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "bitmap " + i + " has granularity bits " + granularityBits);
                long bitmapBytes = divRoundUp(divRoundUp(h.size, 1L << granularityBits), 8);
                long bitmapClusters = divRoundUp(bitmapBytes, cs);
                total += bitmapClusters * cs + roundUp(bitmapClusters * 8, cs);
                dirBytes += roundUp(24 + nameSize, 8); // a copy carries no extra data
                pos += (int) roundUp(24 + extra + nameSize, 8);
            }
            return total + roundUp(dirBytes, cs);
        }
    }

    private static long divRoundUp(long a, long b) {
        return (a + b - 1) / b;
    }

    private static long roundUp(long a, long b) {
        return divRoundUp(a, b) * b;
    }
}
