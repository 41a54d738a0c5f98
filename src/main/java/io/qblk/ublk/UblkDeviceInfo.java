package io.qblk.ublk;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The kernel's view of one ublk device (struct ublksrv_ctrl_dev_info, 64 bytes): what ADD_DEV
 * asks for and gets back, and what GET_DEV_INFO reports.
 */
public record UblkDeviceInfo(int queues, int queueDepth, int state, int maxIoBufBytes, int devId, int serverPid, long flags) {
    static final int BYTES = 64;
    public static final int STATE_DEAD = 0, STATE_LIVE = 1, STATE_QUIESCED = 2;

    public String stateName() {
        return switch (state) {
            case STATE_DEAD -> "dead";
            case STATE_LIVE -> "live";
            case STATE_QUIESCED -> "quiesced";
            default -> "state " + state;
        };
    }

    void writeTo(MemorySegment s) {
        s.asSlice(0, BYTES).fill((byte) 0);
        s.set(ValueLayout.JAVA_SHORT, 0, (short) queues);
        s.set(ValueLayout.JAVA_SHORT, 2, (short) queueDepth);
        s.set(ValueLayout.JAVA_INT, 8, maxIoBufBytes);
        s.set(ValueLayout.JAVA_INT, 12, devId);
        s.set(ValueLayout.JAVA_LONG, 24, flags);
    }

    static UblkDeviceInfo readFrom(MemorySegment s) {
        return new UblkDeviceInfo(
                Short.toUnsignedInt(s.get(ValueLayout.JAVA_SHORT, 0)),
                Short.toUnsignedInt(s.get(ValueLayout.JAVA_SHORT, 2)),
                Short.toUnsignedInt(s.get(ValueLayout.JAVA_SHORT, 4)),
                s.get(ValueLayout.JAVA_INT, 8),
                s.get(ValueLayout.JAVA_INT, 12),
                s.get(ValueLayout.JAVA_INT, 16),
                s.get(ValueLayout.JAVA_LONG, 24));
    }
}
