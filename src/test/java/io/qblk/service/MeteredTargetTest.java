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

    /** A 1 MiB target that does nothing; each test overrides what it watches. */
    private abstract static class StubTarget implements io.qblk.target.BlockTarget {
        public long size() { return 1 << 20; }
        public boolean readOnly() { return false; }
        public void read(long o, MemorySegment d) throws IOException {}
        public void write(long o, MemorySegment s, boolean fua) throws IOException {}
        public void flush() {}
        public void discard(long o, long l) {}
        public void writeZeroes(long o, long l, boolean u) {}
        public java.util.List<Extent> blockStatus(long o, long l) { return java.util.List.of(); }
        public void close() {}
    }

    @Test
    void countsBytesErrorsAndDrains() throws Exception {
        SimpleMeterRegistry reg = new SimpleMeterRegistry();
        CountDownLatch entered = new CountDownLatch(1), release = new CountDownLatch(1);
        MeteredTarget t = new MeteredTarget("d", new StubTarget() {
            @Override public void read(long o, MemorySegment d) throws IOException {
                entered.countDown();
                try { release.await(); } catch (InterruptedException e) { throw new IOException(e); }
            }
            @Override public void write(long o, MemorySegment s, boolean fua) throws IOException { throw new IOException("EIO"); }
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

    /** The linked path of a ublk tag: a plan is metered from the plan to its release, after the target's own holds end. */
    @Test
    void plannedRequestsAreInProgressUntilReleasedAndThenCounted() throws Exception {
        SimpleMeterRegistry reg = new SimpleMeterRegistry();
        java.util.List<String> events = new java.util.ArrayList<>();
        int[] asked = new int[1];
        MeteredTarget t = new MeteredTarget("d", new StubTarget() {
            @Override public boolean planRead(long o, MemorySegment d, io.qblk.io.FilePlan plan) {
                asked[0]++;
                plan.set(null, 7, o + 65536, token -> events.add("target released " + token), 42);
                return true;
            }
            @Override public boolean planWrite(long o, MemorySegment s, io.qblk.io.FilePlan plan) {
                asked[0]++;
                return false; // e.g. an unallocated cluster: only write() serves it
            }
        }, reg);
        try (Arena a = Arena.ofShared()) {
            MemorySegment buf = a.allocate(4096);
            io.qblk.io.FilePlan plan = new io.qblk.io.FilePlan();
            assertTrue(t.planRead(4096, buf, plan));
            assertEquals(7, plan.fd());
            assertEquals(4096 + 65536, plan.fileOffset());
            assertEquals(1, t.inflight(), "in progress until the linked read completes");
            assertFalse(t.drain(20));
            assertEquals(0, reg.get("qblk.io").tags("device", "d", "op", "read").timer().count());
            plan.release();
            assertEquals(java.util.List.of("target released 42"), events, "the target's holds end too");
            assertEquals(0, t.inflight());
            assertTrue(t.drain(20));
            assertEquals(1, reg.get("qblk.io").tags("device", "d", "op", "read").timer().count());
            assertEquals(4096, reg.get("qblk.io.bytes").tags("device", "d", "op", "read").counter().count());
            plan.release();
            assertEquals(1, events.size(), "a second release does nothing");
            assertEquals(1, reg.get("qblk.io").tags("device", "d", "op", "read").timer().count());

            assertFalse(t.planWrite(0, buf, plan), "the target did not plan it");
            assertEquals(0, t.inflight());
            assertEquals(0, reg.get("qblk.io.bytes").tags("device", "d", "op", "write").counter().count());

            t.refuseNew();
            int before = asked[0];
            assertFalse(t.planRead(0, buf, plan), "a device shutting down plans nothing");
            assertEquals(before, asked[0], "the target is not asked");
            assertEquals(0, t.inflight());
        }
    }
}
