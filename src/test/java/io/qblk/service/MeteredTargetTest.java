package io.qblk.service;

import static org.junit.jupiter.api.Assertions.*;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.CountDownLatch;
import org.junit.jupiter.api.Test;

/** Counting, draining and refusing I/O around a target. */
class MeteredTargetTest {

    @Test
    void countsBytesErrorsAndDrains() throws Exception {
        SimpleMeterRegistry reg = new SimpleMeterRegistry();
        CountDownLatch entered = new CountDownLatch(1), release = new CountDownLatch(1);
        MeteredTarget t = new MeteredTarget("d", new io.qblk.target.BlockTarget() {
            public long size() { return 1 << 20; }
            public boolean readOnly() { return false; }
            public void read(long o, MemorySegment d) throws IOException {
                entered.countDown();
                try { release.await(); } catch (InterruptedException e) { throw new IOException(e); }
            }
            public void write(long o, MemorySegment s, boolean fua) throws IOException { throw new IOException("EIO"); }
            public void flush() {}
            public void discard(long o, long l) {}
            public void writeZeroes(long o, long l, boolean u) {}
            public java.util.List<Extent> blockStatus(long o, long l) { return java.util.List.of(); }
            public void close() {}
        }, reg);
        try (Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(4096);
            Thread reader = Thread.ofVirtual().start(() -> { try { t.read(0, buf); } catch (IOException e) { throw new RuntimeException(e); } });
            entered.await();
            assertEquals(1, t.inflight());
            assertEquals(1.0, reg.get("qblk.io.inflight").tag("device", "d").gauge().value());
            assertFalse(t.drain(20), "a request is still running");
            release.countDown();
            assertTrue(t.drain(5000));
            reader.join();
            assertThrows(IOException.class, () -> t.write(0, buf, false));
            assertEquals(4096, reg.get("qblk.io.bytes").tags("device", "d", "op", "read").counter().count());
            assertEquals(1, reg.get("qblk.io").tags("device", "d", "op", "read").timer().count());
            assertEquals(1, reg.get("qblk.io.errors").tags("device", "d", "op", "write").counter().count());
            assertEquals(0, reg.get("qblk.io.bytes").tags("device", "d", "op", "write").counter().count());
            t.refuseNew();
            IOException e = assertThrows(IOException.class, () -> t.read(0, buf));
            assertEquals("device is shutting down", e.getMessage());
            t.removeMeters();
            assertTrue(reg.getMeters().isEmpty());
        }
    }
}
