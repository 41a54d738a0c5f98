package io.qblk.ublk;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

/** The SQE128 ring on the host kernel: NOPs and the eventfd wake-up read the queue owner relies on. */
class CommandRingTest {

    @Test
    void completesNopsAndAnEventfdReadInOneEnterEach() throws Exception {
        try (CommandRing ring = new CommandRing(4, 8); Arena a = Arena.ofConfined()) {
            int efd = UblkSyscalls.eventfd();
            MemorySegment readBuf = a.allocate(8, 8);
            MemorySegment one = a.allocate(8, 8);
            CommandRing.prepRead(ring.nextSqe(), efd, readBuf, 0, 77);
            for (int i = 0; i < 3; i++) {
                MemorySegment sqe = ring.nextSqe();
                sqe.set(ValueLayout.JAVA_BYTE, 0, CommandRing.OP_NOP);
                sqe.set(ValueLayout.JAVA_LONG, 32, 10 + i);
            }
            assertNull(ring.nextSqe(), "a full submission queue hands out no SQE");
            Map<Long, Integer> done = new HashMap<>();
            ring.submitAndWait(3);
            ring.reap(done::put);
            assertEquals(Map.of(10L, 0, 11L, 0, 12L, 0), done, "NOPs complete, the eventfd read waits");
            UblkSyscalls.eventfdSignal(efd, one);
            ring.submitAndWait(1);
            ring.reap(done::put);
            assertEquals(8, done.get(77L), "the eventfd read returns its 8-byte counter");
            assertEquals(1L, readBuf.get(ValueLayout.JAVA_LONG, 0));
            assertEquals(4, ring.freeSlots());
            io.qblk.io.LibC.close(efd);
        }
    }
}
