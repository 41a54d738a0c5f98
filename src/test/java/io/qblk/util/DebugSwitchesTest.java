package io.qblk.util;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Map;
import java.util.Properties;
import org.junit.jupiter.api.Test;

class DebugSwitchesTest {
    @Test
    void defaultsAreTraceOffFixedBuffersAndCarrierOn() {
        assertEquals(new DebugSwitches(false, true, true, true, true, false, null), DebugSwitches.from(Map.of(), new Properties()));
    }

    @Test
    void linkedWritesAreOnlyOnWhenAskedFor() {
        assertEquals(true, DebugSwitches.from(Map.of("QBLK_UBLK_LINKED_WRITES", "1"), new Properties()).linkedWrites());
        assertEquals(false, DebugSwitches.from(Map.of("QBLK_UBLK_LINKED_WRITES", "yes"), new Properties()).linkedWrites());
    }

    @Test
    void ringTaskRunIsPassedOnAsGiven() {
        assertEquals(" Defer ", DebugSwitches.from(Map.of("QBLK_RING_TASKRUN", " Defer "), new Properties()).taskRun());
        assertEquals("sometimes", DebugSwitches.from(Map.of("QBLK_RING_TASKRUN", "sometimes"), new Properties()).taskRun());
    }

    @Test
    void eachSwitchHasItsVariable() {
        assertEquals(new DebugSwitches(true, false, false, false, false, false, null),
                DebugSwitches.from(Map.of("QBLK_UBLK_TRACE", "1", "QBLK_UBLK_FIXED_BUFFERS", "0", "QBLK_CARRIER", "0", "QBLK_NBD_RING_RECV", "0",
                        "QBLK_UBLK_LINKED_READS", "0", "QBLK_UBLK_LINKED_WRITES", "0"), new Properties()));
        Properties p = new Properties();
        p.setProperty("qblk.carrier", "off");
        assertEquals(new DebugSwitches(false, true, false, true, true, false, null), DebugSwitches.from(Map.of(), p));
        assertEquals(new DebugSwitches(false, true, true, true, true, false, null), DebugSwitches.from(Map.of("QBLK_UBLK_TRACE", "yes", "QBLK_CARRIER", "1"), new Properties()));
    }
}
