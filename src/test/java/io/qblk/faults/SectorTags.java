package io.qblk.faults;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Every 512-byte guest sector a workload writes carries its origin: a magic number, the id of the
 * guest write and the guest sector number, followed by a pattern derived from both. Reading a
 * sector back therefore tells exactly which write (and which sector of it) the data came from.
 */
final class SectorTags {
    static final int SECTOR = 512;
    private static final long MAGIC = 0x51424c4b54414731L; // "QBLKTAG1"
    private static final ValueLayout.OfLong LONG = ValueLayout.JAVA_LONG_UNALIGNED;

    /** Result of {@link #decode}: a zero sector. */
    static final long ZERO = 0;
    /** Result of {@link #decode}: neither zeroes nor an intact tag. */
    static final long GARBAGE = -1;

    private static final MemorySegment ZEROES = MemorySegment.ofArray(new byte[SECTOR]);
    private static final int[] PROBES = {3, 17, 40, 63};

    private SectorTags() {}

    static long pattern(int writeId, long sector, int i) {
        long x = (writeId * 0x9E3779B97F4A7C15L) ^ (sector * 0xC2B2AE3D27D4EB4FL) ^ (i * 0x165667B19E3779F9L);
        x ^= x >>> 29;
        return x * 0xBF58476D1CE4E5B9L;
    }

    /** Fills {@code seg} (a multiple of 512 bytes) with tags of write {@code writeId} starting at guest sector {@code firstSector}. */
    static void fill(MemorySegment seg, int writeId, long firstSector) {
        long n = seg.byteSize() / SECTOR;
        for (long s = 0; s < n; s++) {
            long base = s * SECTOR;
            long sector = firstSector + s;
            seg.set(LONG, base, MAGIC);
            seg.set(LONG, base + 8, writeId);
            seg.set(LONG, base + 16, sector);
            for (int i = 3; i < SECTOR / 8; i++) seg.set(LONG, base + 8L * i, pattern(writeId, sector, i));
        }
    }

    /**
     * Decodes the sector at byte {@code off} of {@code seg}: {@link #ZERO}, {@link #GARBAGE}, or
     * {@code encode(writeId, sector)} of the intact tag found.
     */
    static long decode(MemorySegment seg, long off) {
        long m = seg.get(LONG, off);
        if (m != MAGIC) return MemorySegment.mismatch(seg, off, off + SECTOR, ZEROES, 0, SECTOR) < 0 ? ZERO : GARBAGE;
        long id = seg.get(LONG, off + 8);
        long sector = seg.get(LONG, off + 16);
        if (id < 0 || id >= (1 << 24) || sector < 0) return GARBAGE;
        // sectors are atomic in the disk model: a few probes of the pattern tell a whole tag from a shifted one
        for (int i : PROBES) if (seg.get(LONG, off + 8L * i) != pattern((int) id, sector, i)) return GARBAGE;
        return encode((int) id, sector);
    }

    static long encode(int writeId, long sector) {
        return (sector << 24) | (writeId + 1L);
    }

    static int writeIdOf(long code) {
        return (int) (code & 0xffffff) - 1;
    }

    static long sectorOf(long code) {
        return code >>> 24;
    }
}
