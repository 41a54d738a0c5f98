package io.qblk.ublk;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The byte layouts and opcode encodings qblk sends to the ublk driver (checked against ublk_cmd.h). */
class UblkLayoutTest {

    @Test
    void ioctlEncodedOpcodesMatchTheKernelHeader() {
        // _IOWR('u', 0x04, struct ublksrv_ctrl_cmd) etc.; values as the uapi header computes them
        assertEquals(0xC0207504, UblkControl.ioc(3, UblkControl.CMD_ADD_DEV, 32));
        assertEquals(0x80207513, UblkControl.ioc(2, UblkControl.CMD_GET_FEATURES, 32));
        assertEquals(0xC0107520, UblkControl.ioOp(0x20, UblkControl.F_CMD_IOCTL_ENCODE));
        assertEquals(0xC0107521, UblkControl.ioOp(0x21, UblkControl.F_CMD_IOCTL_ENCODE));
        assertEquals(0x20, UblkControl.ioOp(0x20, UblkControl.F_USER_RECOVERY)); // legacy kernels (6.1)
    }

    @Test
    void deviceInfoRoundTripsThroughItsKernelLayout() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(UblkDeviceInfo.BYTES);
            s.fill((byte) 0x5a);
            UblkDeviceInfo want = new UblkDeviceInfo(2, 128, 0, 512 * 1024, 7, 0, 0x18);
            want.writeTo(s);
            assertEquals(2, s.get(ValueLayout.JAVA_SHORT, 0));
            assertEquals(128, s.get(ValueLayout.JAVA_SHORT, 2));
            assertEquals(512 * 1024, s.get(ValueLayout.JAVA_INT, 8));
            assertEquals(7, s.get(ValueLayout.JAVA_INT, 12));
            assertEquals(0x18L, s.get(ValueLayout.JAVA_LONG, 24));
            assertEquals(0L, s.get(ValueLayout.JAVA_LONG, 56), "reserved bytes are zeroed");
            s.set(ValueLayout.JAVA_SHORT, 4, (short) UblkDeviceInfo.STATE_QUIESCED);
            s.set(ValueLayout.JAVA_INT, 16, 4242);
            UblkDeviceInfo back = UblkDeviceInfo.readFrom(s);
            assertEquals(new UblkDeviceInfo(2, 128, 2, 512 * 1024, 7, 4242, 0x18), back);
            assertEquals("quiesced", back.stateName());
        }
    }

    @Test
    void paramsCarryBasicAndDiscardBlocks() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(UblkParams.BYTES);
            new UblkParams(1L << 30, 9, 12, 1024, false, true, true, 4096).writeTo(s);
            assertEquals(64, s.get(ValueLayout.JAVA_INT, 0));
            assertEquals(UblkParams.TYPE_BASIC | UblkParams.TYPE_DISCARD, s.get(ValueLayout.JAVA_INT, 4));
            assertEquals(UblkParams.ATTR_VOLATILE_CACHE | UblkParams.ATTR_FUA, s.get(ValueLayout.JAVA_INT, 8));
            assertEquals(9, s.get(ValueLayout.JAVA_BYTE, 12));
            assertEquals(12, s.get(ValueLayout.JAVA_BYTE, 13));
            assertEquals(1024, s.get(ValueLayout.JAVA_INT, 16));
            assertEquals((1L << 30) >> 9, s.get(ValueLayout.JAVA_LONG, 24));
            assertEquals(4096, s.get(ValueLayout.JAVA_INT, 44));
            assertEquals(1, s.get(ValueLayout.JAVA_SHORT, 56), "one discard segment (6.1 rejects more)");

            new UblkParams(1L << 20, 9, 12, 1024, true, false, false, 4096).writeTo(s);
            assertEquals(UblkParams.TYPE_BASIC, s.get(ValueLayout.JAVA_INT, 4));
            assertEquals(UblkParams.ATTR_READ_ONLY, s.get(ValueLayout.JAVA_INT, 8));
            assertEquals(0, s.get(ValueLayout.JAVA_INT, 44));
        }
    }

    @Test
    void queueAndDepthLimitsAreCheckedBeforeTheKernelIsAsked() throws UblkException {
        int cpus = Runtime.getRuntime().availableProcessors();
        UblkServer.Options d = UblkServer.Options.defaults();
        UblkException q = assertThrows(UblkException.class, () -> UblkServer.checkLimits(d.withQueues(cpus + 1)));
        assertEquals("-q " + (cpus + 1) + ": ublk allows 1 to " + cpus + " queues here (at most one per CPU)", q.getMessage());
        UblkException dd = assertThrows(UblkException.class, () -> UblkServer.checkLimits(d.withDepth(4097)));
        assertEquals("-d 4097: ublk queue depth must be 1 to 4096", dd.getMessage());
        assertThrows(UblkException.class, () -> UblkServer.checkLimits(d.withDepth(0)));
        UblkServer.checkLimits(d.withDepth(4096)); // the kernel's maximum is accepted
    }
}
