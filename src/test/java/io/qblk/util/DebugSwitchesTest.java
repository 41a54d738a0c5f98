package io.qblk.util;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.Map;
import java.util.Properties;
import org.junit.jupiter.api.Test;

class DebugSwitchesTest {
    @Test
    void defaultsAreTraceOffFixedBuffersAndCarrierOn() {
        assertEquals(new DebugSwitches(false, true, true, true, true, false, DebugSwitches.DEFAULT_TASK_RUN), DebugSwitches.from(Map.of(), new Properties()));
    }

    @Test
    void linkedWritesAreOnlyOnWhenAskedFor() {
        assertEquals(true, DebugSwitches.from(Map.of("QBLK_UBLK_LINKED_WRITES", "1"), new Properties()).linkedWrites());
        assertEquals(false, DebugSwitches.from(Map.of("QBLK_UBLK_LINKED_WRITES", "yes"), new Properties()).linkedWrites());
    }

    @Test
    void ringTaskRunIsChosenByNameAndABadNameKeepsTheDefault() {
        assertEquals("defer", DebugSwitches.from(Map.of("QBLK_RING_TASKRUN", "defer"), new Properties()).taskRun());
        assertEquals("off", DebugSwitches.from(Map.of("QBLK_RING_TASKRUN", "OFF"), new Properties()).taskRun());
        assertEquals("coop", DebugSwitches.from(Map.of("QBLK_RING_TASKRUN", "coop"), new Properties()).taskRun());
        assertEquals(DebugSwitches.DEFAULT_TASK_RUN, DebugSwitches.from(Map.of("QBLK_RING_TASKRUN", "sometimes"), new Properties()).taskRun());
    }

    @Test
    void eachSwitchHasItsVariable() {
        assertEquals(new DebugSwitches(true, false, false, false, false, false, DebugSwitches.DEFAULT_TASK_RUN),
                DebugSwitches.from(Map.of("QBLK_UBLK_TRACE", "1", "QBLK_UBLK_FIXED_BUFFERS", "0", "QBLK_CARRIER", "0", "QBLK_NBD_RING_RECV", "0",
                        "QBLK_UBLK_LINKED_READS", "0", "QBLK_UBLK_LINKED_WRITES", "0"), new Properties()));
        Properties p = new Properties();
        p.setProperty("qblk.carrier", "off");
        assertEquals(new DebugSwitches(false, true, false, true, true, false, DebugSwitches.DEFAULT_TASK_RUN), DebugSwitches.from(Map.of(), p));
        assertEquals(new DebugSwitches(false, true, true, true, true, false, DebugSwitches.DEFAULT_TASK_RUN), DebugSwitches.from(Map.of("QBLK_UBLK_TRACE", "yes", "QBLK_CARRIER", "1"), new Properties()));
    }
}
