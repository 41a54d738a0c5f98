package io.qblk.ublk;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Device parameters sent with SET_PARAMS (struct ublk_params: a header, the basic block, and the
 * discard block when the target supports discard and write-zeroes).
 *
 * @param volatileCache the device has a write cache: the kernel sends FLUSH and FUA writes
 */
public record UblkParams(long sizeBytes, int logicalBlockShift, int physicalBlockShift, int maxSectors,
                         boolean readOnly, boolean volatileCache, boolean discard, int discardGranularity) {
    static final int BYTES = 64;
    static final int TYPE_BASIC = 1, TYPE_DISCARD = 2;
    static final int ATTR_READ_ONLY = 1, ATTR_VOLATILE_CACHE = 4, ATTR_FUA = 8;

    void writeTo(MemorySegment s) {
        s.asSlice(0, BYTES).fill((byte) 0);
        s.set(ValueLayout.JAVA_INT, 0, BYTES);
        s.set(ValueLayout.JAVA_INT, 4, TYPE_BASIC | (discard ? TYPE_DISCARD : 0));
        int attrs = (readOnly ? ATTR_READ_ONLY : 0) | (volatileCache ? ATTR_VOLATILE_CACHE | ATTR_FUA : 0);
        s.set(ValueLayout.JAVA_INT, 8, attrs);
        s.set(ValueLayout.JAVA_BYTE, 12, (byte) logicalBlockShift);
        s.set(ValueLayout.JAVA_BYTE, 13, (byte) physicalBlockShift);
        s.set(ValueLayout.JAVA_BYTE, 14, (byte) physicalBlockShift); // io_opt
        s.set(ValueLayout.JAVA_BYTE, 15, (byte) logicalBlockShift);  // io_min
        s.set(ValueLayout.JAVA_INT, 16, maxSectors);
        s.set(ValueLayout.JAVA_LONG, 24, sizeBytes >>> 9);
        if (discard) {
            s.set(ValueLayout.JAVA_INT, 44, discardGranularity);
            int maxDiscard = 1 << 21; // sectors (1 GiB per request); the block layer splits larger ranges
            s.set(ValueLayout.JAVA_INT, 48, maxDiscard);
            s.set(ValueLayout.JAVA_INT, 52, maxDiscard);
            s.set(ValueLayout.JAVA_SHORT, 56, (short) 1);
        }
    }
}
