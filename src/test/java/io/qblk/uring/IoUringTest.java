package io.qblk.uring;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.Errno;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The raw ring: setup, mapping, SQE/CQE encoding, NOP through io_uring_enter. */
class IoUringTest {

    record Cqe(long userData, int res, int flags, long big0, long big1) {}

    private static List<Cqe> reapAll(IoUring ring) {
        List<Cqe> out = new ArrayList<>();
        ring.reap((ud, res, flags, b0, b1) -> out.add(new Cqe(ud, res, flags, b0, b1)));
        return out;
    }

    @Test
    void layoutsMatchTheKernelAbi() {
        assertEquals(120, UringLayouts.PARAMS.byteSize());
        assertEquals(64, UringLayouts.SQE.byteSize());
        assertEquals(128, UringLayouts.SQE128.byteSize());
        assertEquals(16, UringLayouts.CQE.byteSize());
        assertEquals(32, UringLayouts.CQE32.byteSize());
        assertEquals(48, UringLayouts.SQE_CMD_OFFSET);
        assertEquals(16, UringLayouts.IOVEC.byteSize());
    }

    @Test
    void nopRoundTripThroughTheKernel() throws Exception {
        try (IoUring ring = IoUring.create(8, 0)) {
            assertEquals(8, ring.sqEntries());
            assertEquals(16, ring.cqEntries());
            assertFalse(ring.sqe128());
            for (int i = 0; i < 3; i++) ring.nextSqe().prepNop().userData(100 + i);
            assertEquals(3, ring.submitAndWait(3));
            List<Cqe> cqes = reapAll(ring);
            assertEquals(List.of(100L, 101L, 102L), cqes.stream().map(Cqe::userData).toList());
            for (Cqe c : cqes) assertEquals(0, c.res());
            assertEquals(0, ring.cqReady());
        }
    }

    /**
     * A held SQE (a URING_CMD waiting in a link, see IoUring#holdLast) is never handed out again until
     * released, however often the ring wraps meanwhile; the others keep cycling.
     */
    @Test
    void aHeldSqeStaysUntouchedUntilReleased(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("plain");
        Files.write(f, new byte[4096]);
        int efd = UringSyscalls.eventfd(0, UringSyscalls.EFD_CLOEXEC);
        assertTrue(efd >= 0);
        try (IoUring ring = IoUring.create(8, 0);
             Arena a = Arena.ofConfined();
             var file = io.qblk.io.PosixFileBackend.open(f, true)) {
            MemorySegment buf = a.allocate(8);
            // READ of an empty eventfd: waits until written; the command waits in the link behind it.
            ring.nextSqe().prepRead(efd, buf.address(), 8, 0).addFlags(Sqe.IO_LINK).userData(1);
            ring.nextSqe().prepUringCmd(file.fd(), 0x1234).userData(2);
            int held = ring.holdLast();
            byte[] before = ring.sqeAt(held).toByteArray();
            assertEquals(2, ring.submit());
            assertEquals(7, ring.sqSpace(), "the held SQE stays out after its position was consumed");
            for (int round = 0; round < 10; round++) { // wrap the 8-entry ring many times
                for (int i = 0; i < 7; i++) {
                    assertNotEquals(held, ring.nextSlot(), "round " + round + " SQE " + i);
                    ring.nextSqe().prepNop().userData(100 + i);
                }
                assertNull(ring.nextSqe(), "7 SQEs free while one is held");
                assertEquals(7, ring.submitAndWait(7));
                List<Cqe> nops = reapAll(ring);
                assertEquals(7, nops.size());
                for (Cqe c : nops) assertTrue(c.userData() >= 100, "only the NOPs completed: " + c);
            }
            assertArrayEquals(before, ring.sqeAt(held).toByteArray(), "the held SQE was not rewritten");
            assertEquals(1, ring.heldSqes());

            MemorySegment one = a.allocate(ValueLayout.JAVA_LONG);
            one.set(ValueLayout.JAVA_LONG, 0, 1L);
            assertEquals(8, UringSyscalls.write(efd, one, 8));
            List<Cqe> done = new ArrayList<>();
            while (done.size() < 2) {
                ring.submitAndWait(1);
                done.addAll(reapAll(ring));
            }
            assertEquals(1L, done.get(0).userData());
            assertEquals(8, done.get(0).res(), "the eventfd read");
            assertEquals(2L, done.get(1).userData());
            assertNotEquals(-Errno.ECANCELED, done.get(1).res(), "the command was issued, not cancelled");
            assertTrue(done.get(1).res() < 0, "a plain file has no uring_cmd handler");
            ring.release(held);
            assertEquals(0, ring.heldSqes());
            assertEquals(8, ring.sqSpace(), "released: all SQEs free again");
        } finally {
            UringSyscalls.close(efd);
        }
    }

    @Test
    void submissionRingReportsFullAndRecovers() throws Exception {
        try (IoUring ring = IoUring.create(8, 0)) {
            for (int i = 0; i < 8; i++) { Sqe s = ring.nextSqe(); assertNotNull(s, "slot " + i); s.prepNop().userData(i); }
            assertNull(ring.nextSqe(), "a full SQ ring hands out no SQE");
            assertEquals(8, ring.submitAndWait(8));
            assertEquals(8, reapAll(ring).size());
            assertNotNull(ring.nextSqe(), "space again after the kernel consumed the batch");
        }
    }

    @Test
    void sqe128AndCqe32RingCarriesTheFullCommandArea(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("plain");
        Files.write(f, new byte[4096]);
        try (IoUring ring = IoUring.create(4, IoUring.SETUP_SQE128 | IoUring.SETUP_CQE32);
             Arena a = Arena.ofConfined();
             var file = io.qblk.io.PosixFileBackend.open(f, true)) {
            assertTrue(ring.sqe128());
            assertTrue(ring.cqe32());
            MemorySegment payload = a.allocate(80);
            for (int i = 0; i < 80; i++) payload.set(ValueLayout.JAVA_BYTE, i, (byte) (i + 1));
            UringRequest req = new UringRequest().prepUringCmd(file.fd(), 0xC0107521, payload);
            int slot = ring.nextSlot();
            Sqe sqe = ring.nextSqe();
            req.prepare(sqe, 0);
            sqe.userData(0x1122334455667788L);

            ByteBuffer b = ByteBuffer.wrap(ring.sqeAt(slot).toByteArray()).order(ByteOrder.LITTLE_ENDIAN);
            assertEquals(128, b.capacity());
            assertEquals(46, b.get(0), "opcode URING_CMD");
            assertEquals(file.fd(), b.getInt(4), "fd");
            assertEquals(0xC0107521, b.getInt(8), "cmd_op overlays the low half of off");
            assertEquals(0, b.getInt(12), "pad1");
            assertEquals(0x1122334455667788L, b.getLong(32), "user_data");
            for (int i = 0; i < 80; i++) assertEquals((byte) (i + 1), b.get(48 + i), "cmd byte " + i);

            // A regular file has no uring_cmd handler: the kernel answers EOPNOTSUPP (or EINVAL/ENOTTY
            // on some kernels), which proves the 128-byte SQE reached it and was parsed.
            assertEquals(1, ring.submitAndWait(1));
            List<Cqe> cqes = reapAll(ring);
            assertEquals(1, cqes.size());
            assertEquals(0x1122334455667788L, cqes.get(0).userData());
            assertTrue(cqes.get(0).res() < 0, "uring_cmd on a plain file fails, got " + cqes.get(0).res());
            assertEquals(0, cqes.get(0).big0(), "big_cqe of a failed command is zero");
        }
    }

    @Test
    void cmdPayloadLargerThanTheSqeIsRefused() throws Exception {
        try (IoUring ring = IoUring.create(4, 0); Arena a = Arena.ofConfined()) {
            UringRequest req = new UringRequest().prepUringCmd(0, 1, a.allocate(32));
            Sqe sqe = ring.nextSqe();
            assertEquals(16, sqe.cmdCapacity());
            assertThrows(IllegalArgumentException.class, () -> req.prepare(sqe, 0));
            Sqe s2 = ring.nextSqe();
            assertThrows(IndexOutOfBoundsException.class, () -> s2.cmdLong(12, 1L));
            s2.cmdLong(8, -1L);
            assertEquals(-1L, s2.cmdLong(8));
        }
    }

    @Test
    void setupErrorsCarryTheErrnoName() {
        var e = assertThrows(io.qblk.io.ErrnoException.class, () -> IoUring.create(8, 1 << 30));
        assertEquals(Errno.EINVAL, e.errno());
        assertTrue(e.getMessage().contains("EINVAL"), e.getMessage());
    }

    @Test
    void singleIssuerRingRefusesOtherThreads() throws Exception {
        try (IoUring ring = IoUring.create(4, IoUring.SETUP_SINGLE_ISSUER)) {
            ring.nextSqe().prepNop().userData(1);
            assertEquals(1, ring.submitAndWait(1));
            assertEquals(1, reapAll(ring).size());
            ring.nextSqe().prepNop().userData(2);
            java.util.concurrent.atomic.AtomicReference<Throwable> other = new java.util.concurrent.atomic.AtomicReference<>();
            Thread t = Thread.ofPlatform().start(() -> {
                try {
                    ring.submitAndWait(1);
                } catch (Throwable e) {
                    other.set(e);
                }
            });
            t.join();
            assertTrue(other.get() instanceof io.qblk.io.ErrnoException ee && ee.errno() == Errno.EEXIST,
                    "another thread entering a SINGLE_ISSUER ring gets EEXIST, got " + other.get());
        }
    }

    @Test
    void deferredCompletionWorkIsFetchedWithoutASubmissionOrAWait() throws Exception {
        int efd = UringSyscalls.eventfd(0, UringSyscalls.EFD_CLOEXEC);
        assertTrue(efd >= 0);
        try (IoUring ring = IoUring.create(8, 0, TaskRun.DEFER); Arena a = Arena.ofConfined()) {
            assertEquals(TaskRun.DEFER, ring.taskRun());
            MemorySegment buf = a.allocate(8), one = a.allocate(ValueLayout.JAVA_LONG);
            ring.nextSqe().prepRead(efd, buf.address(), 8, 0).userData(7);
            assertEquals(1, ring.submit()); // the read waits on the empty eventfd (poll armed)
            one.set(ValueLayout.JAVA_LONG, 0, 1L);
            assertEquals(8, UringSyscalls.write(efd, one, 8)); // the wake-up queues the work for this thread
            assertEquals(0, ring.cqReady(), "deferred: no CQE until the owner asks for completions");
            ring.submitAndWait(0); // nothing to submit, no wait: enters only because the kernel flagged work
            List<Cqe> done = reapAll(ring);
            assertEquals(1, done.size(), "the flagged work was run by the enter");
            assertEquals(7L, done.get(0).userData());
            assertEquals(8, done.get(0).res());
        } finally {
            UringSyscalls.close(efd);
        }
    }

    @Test
    void qblkRingTaskRunNamesAModeAndABadValueKeepsTheDefaultWithAWarning() {
        var err = new java.io.ByteArrayOutputStream();
        var warn = new java.io.PrintStream(err, true, java.nio.charset.StandardCharsets.UTF_8);
        assertEquals(TaskRun.COOP, TaskRun.DEFAULT);
        assertEquals(TaskRun.DEFAULT, TaskRun.resolve(null, warn));
        assertEquals(TaskRun.DEFAULT, TaskRun.resolve(" ", warn));
        assertEquals(TaskRun.OFF, TaskRun.resolve("OFF", warn));
        assertEquals(TaskRun.DEFER, TaskRun.resolve("defer", warn));
        assertEquals("", err.toString(java.nio.charset.StandardCharsets.UTF_8));
        assertEquals(TaskRun.DEFAULT, TaskRun.resolve("sometimes", warn));
        assertEquals("qblk: QBLK_RING_TASKRUN=sometimes is not off, coop or defer; using coop\n", err.toString(java.nio.charset.StandardCharsets.UTF_8));
    }

    @Test
    void taskRunModesWeakenToOffAndAreReadBackFromTheFlags() throws Exception {
        assertEquals(TaskRun.COOP, TaskRun.DEFER.weaker());
        assertEquals(TaskRun.OFF, TaskRun.COOP.weaker());
        assertEquals(TaskRun.OFF, TaskRun.OFF.weaker());
        assertEquals(TaskRun.DEFER, TaskRun.parse(" Defer "));
        assertNull(TaskRun.parse("sometimes"));
        for (TaskRun t : TaskRun.values()) {
            assertEquals(t, TaskRun.of(t.setupFlags() | IoUring.SETUP_SQE128));
            try (IoUring ring = IoUring.create(4, IoUring.SETUP_SQE128 | IoUring.SETUP_CQE32, t)) {
                assertEquals(t, ring.taskRun());
                assertTrue(ring.sqe128() && ring.cqe32());
                ring.nextSqe().prepNop().userData(1);
                assertEquals(1, ring.submitAndWait(1));
                assertEquals(1, reapAll(ring).size());
            }
        }
        // SQPOLL refuses both COOP and DEFER (EINVAL): the ring is made without them.
        try (IoUring ring = IoUring.create(4, IoUring.SETUP_SQPOLL, TaskRun.DEFER)) {
            assertEquals(TaskRun.OFF, ring.taskRun());
            assertTrue((ring.setupFlags() & IoUring.SETUP_SQPOLL) != 0);
        }
        // A flag no kernel knows fails in every mode, with the kernel's errno.
        var e = assertThrows(io.qblk.io.ErrnoException.class, () -> IoUring.create(8, 1 << 30, TaskRun.DEFER));
        assertEquals(Errno.EINVAL, e.errno());
    }
}
