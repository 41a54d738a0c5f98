package io.qblk.uring;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.io.LibC;
import io.qblk.io.PosixFileBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** The owner-thread executor: hand-off, batching, back-pressure, owner-side submission, close, errors. */
@Timeout(60)
class RingThreadTest implements RingModeSuite {
    @TempDir
    Path dir;
    Arena arena;
    RingThread ring;
    PosixFileBackend file;

    @BeforeEach
    void setUp() throws IOException {
        arena = Arena.ofShared();
        ring = RingThread.start("test-ring", defaults().withEntries(32));
        file = PosixFileBackend.open(dir.resolve("data"), false, true);
    }

    @AfterEach
    void tearDown() throws IOException {
        ring.close();
        file.close();
        arena.close();
    }

    private MemorySegment pattern(int size, long seed) {
        MemorySegment s = arena.allocate(size, 4096);
        SplittableRandom r = new SplittableRandom(seed);
        for (int i = 0; i < size; i += 8) s.set(ValueLayout.JAVA_LONG, i, r.nextLong());
        return s;
    }

    @Test
    void theRingRunsInTheModeAskedFor() {
        assertEquals(taskRun(), ring.taskRun(), "this kernel (>= 6.1) accepts every mode");
    }

    @Test
    void nopCompletes() throws IOException {
        ring.nop();
        assertTrue(ring.enterCalls() >= 1);
        assertTrue(ring.submittedSqes() >= 1);
    }

    @Test
    void writeReadFsyncRoundTrip() throws IOException {
        MemorySegment src = pattern(64 * 1024, 1);
        assertEquals(65536, ring.write(file.fd(), src, 8192));
        ring.fsync(file.fd(), false);
        ring.fsync(file.fd(), true);
        MemorySegment dst = arena.allocate(65536, 4096);
        assertEquals(65536, ring.read(file.fd(), dst, 8192));
        assertEquals(-1, src.mismatch(dst));
        assertEquals(8192 + 65536, file.size());
        // Reading at end of file returns 0 bytes.
        assertEquals(0, ring.read(file.fd(), dst, 1 << 20));
    }

    @Test
    void fixedBuffersRoundTrip() throws IOException {
        MemorySegment a = arena.allocate(16384, 4096), b = arena.allocate(16384, 4096);
        ring.registerBuffers(a, b);
        a.copyFrom(pattern(16384, 7));
        UringRequest r = new UringRequest();
        ring.execute(r.prepWriteFixed(file.fd(), a.asSlice(4096, 8192), 0, 0));
        assertEquals(8192, r.checkedResult("write fixed"));
        ring.execute(r.prepReadFixed(file.fd(), b.asSlice(0, 8192), 0, 1));
        assertEquals(8192, r.checkedResult("read fixed"));
        assertEquals(-1, a.asSlice(4096, 8192).mismatch(b.asSlice(0, 8192)));
        // A buffer outside the registered one is refused by the kernel.
        ring.execute(r.prepReadFixed(file.fd(), arena.allocate(4096, 4096), 0, 1));
        assertEquals(-Errno.EFAULT, r.result());
        ring.unregisterBuffers();
        ring.execute(r.prepReadFixed(file.fd(), b.asSlice(0, 4096), 0, 0));
        assertTrue(r.result() < 0, "fixed read after unregister fails");
    }

    @Test
    void vectoredRoundTrip() throws IOException {
        MemorySegment p1 = pattern(4096, 11), p2 = pattern(8192, 12);
        MemorySegment iov = arena.allocate(UringLayouts.iovecArray(2));
        setIov(iov, 0, p1);
        setIov(iov, 1, p2);
        UringRequest r = new UringRequest();
        ring.execute(r.prepWritev(file.fd(), iov, 2, 4096));
        assertEquals(12288, r.checkedResult("writev"));
        MemorySegment q1 = arena.allocate(8192, 4096), q2 = arena.allocate(4096, 4096);
        setIov(iov, 0, q1);
        setIov(iov, 1, q2);
        ring.execute(r.prepReadv(file.fd(), iov, 2, 4096));
        assertEquals(12288, r.checkedResult("readv"));
        MemorySegment joined = arena.allocate(12288);
        joined.asSlice(0, 4096).copyFrom(p1);
        joined.asSlice(4096).copyFrom(p2);
        assertEquals(-1, joined.asSlice(0, 8192).mismatch(q1));
        assertEquals(-1, joined.asSlice(8192).mismatch(q2));
    }

    private static void setIov(MemorySegment iov, int i, MemorySegment buf) {
        iov.set(ValueLayout.ADDRESS, i * 16L, buf);
        iov.set(ValueLayout.JAVA_LONG, i * 16L + 8, buf.byteSize());
    }

    @Test
    void fallocateGrowsAndPunches() throws IOException {
        ring.fallocate(file.fd(), 0, 0, 1 << 20);
        assertEquals(1 << 20, file.size());
        MemorySegment src = pattern(8192, 3);
        ring.write(file.fd(), src, 0);
        ring.fallocate(file.fd(), LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, 0, 4096);
        MemorySegment dst = arena.allocate(8192, 4096);
        ring.read(file.fd(), dst, 0);
        for (int i = 0; i < 4096; i++) assertEquals(0, dst.get(ValueLayout.JAVA_BYTE, i));
        assertEquals(-1, src.asSlice(4096).mismatch(dst.asSlice(4096)));
        var e = assertThrows(ErrnoException.class, () -> ring.fallocate(file.fd(), 0x7777, 0, 4096));
        assertTrue(e.errno() == Errno.EOPNOTSUPP || e.errno() == Errno.EINVAL, e.getMessage());
    }

    @Test
    void linkedSqesRunInOrderAndCancelAfterAFailure() throws IOException {
        MemorySegment src = pattern(4096, 5), dst = arena.allocate(4096, 4096);
        UringRequest w = new UringRequest().prepWrite(file.fd(), src, 0);
        UringRequest s = new UringRequest().prepFsync(file.fd(), true);
        UringRequest r = new UringRequest().prepRead(file.fd(), dst, 0);
        ring.executeLinked(w, s, r);
        assertEquals(4096, w.result());
        assertEquals(0, s.result());
        assertEquals(4096, r.result());
        assertEquals(-1, src.mismatch(dst));

        UringRequest bad = new UringRequest().prepRead(-1, dst, 0);
        UringRequest after = new UringRequest().prepNop();
        ring.executeLinked(bad, after);
        assertEquals(-Errno.EBADF, bad.result());
        assertEquals(-Errno.ECANCELED, after.result(), "the link after a failure is cancelled");
    }

    /** A chain head that records, on the owner thread, the order of completions and whether it was failed. */
    static final class Head extends UringRequest {
        final List<String> events;
        final UringRequest last;
        volatile boolean lastDoneAtMyCompletion, failedOnce;

        Head(List<String> events, UringRequest last) {
            this.events = events;
            this.last = last;
        }

        @Override
        protected void complete(int index, int res, int flags, long big0, long big1) {
            super.complete(index, res, flags, big0, big1);
            lastDoneAtMyCompletion = last.isDone();
            events.add("head " + res);
        }

        @Override
        protected void fail(IOException cause) {
            super.fail(cause);
            failedOnce = true;
        }
    }

    /**
     * executeForLast (the ublk tag's READ linked to COMMIT_AND_FETCH): the head completes on the owner
     * before the last, the caller gets the last one's result; a short read breaks the link (the last
     * is cancelled, the head keeps its short count); on a carried thread too.
     */
    @Test
    void executeForLastWaitsForTheLastAndTheHeadCompletesFirst() throws Exception {
        MemorySegment src = pattern(4096, 11);
        file.write(0, src); // the file is 4096 bytes long
        for (boolean carried : new boolean[] {false, true}) {
            try (RingThread r = RingThread.start("chain", defaults().withEntries(32).withCarrier(carried))) {
                List<String> events = java.util.Collections.synchronizedList(new ArrayList<>());
                MemorySegment dst = arena.allocate(8192, 4096);
                UringRequest nop = new UringRequest();
                Head head = new Head(events, nop);
                LinkedRequests chain = LinkedRequests.chain(head, nop);
                int[] results = new int[4];
                Throwable[] err = new Throwable[1];
                Thread t = r.newThread("tag", () -> {
                    try {
                        head.prepRead(file.fd(), dst.asSlice(0, 4096), 0);
                        nop.prepNop();
                        results[0] = r.executeForLast(chain);
                        results[1] = head.result();
                        head.prepRead(file.fd(), dst, 0); // 8192 asked, 4096 there: short, the link breaks
                        nop.prepNop();
                        results[2] = r.executeForLast(chain);
                        results[3] = head.result();
                    } catch (Throwable e) {
                        err[0] = e;
                    }
                });
                t.start();
                t.join(20_000);
                assertNull(err[0], () -> "chain failed: " + err[0]);
                assertEquals(0, results[0], "the last request's result (NOP)");
                assertEquals(4096, results[1]);
                assertEquals(-1, src.mismatch(dst.asSlice(0, 4096)), "the head read the data");
                assertEquals(-Errno.ECANCELED, results[2], "a short read cancels the linked request");
                assertEquals(4096, results[3], "the head keeps its short count");
                assertEquals(List.of("head 4096", "head 4096"), events);
                assertFalse(head.lastDoneAtMyCompletion, "the head completed before the last request");
                assertFalse(head.failedOnce);
            }
        }
    }

    /** Runs {@code task} on the owner thread of {@code r} and returns its result. */
    private static int onOwner(RingThread r, java.util.function.IntSupplier task) throws Exception {
        var result = new java.util.concurrent.CompletableFuture<Integer>();
        r.submit(new UringOp() {
            @Override protected int sqeCount() { return 0; }
            @Override protected void prepare(Sqe sqe, int index) { result.complete(task.getAsInt()); }
            @Override protected void complete(int index, int res, int flags, long big0, long big1) {}
            @Override protected void fail(IOException cause) { result.completeExceptionally(cause); }
        });
        return result.get(20, java.util.concurrent.TimeUnit.SECONDS);
    }

    /**
     * A URING_CMD waiting in a link keeps its SQE until its completion (kernels from 6.10 read it only
     * when they issue it): other requests wrap the ring meanwhile without touching it, and it is
     * released when the command completes.
     */
    @Test
    void aLinkedUringCmdKeepsItsSqeUntilItCompletes() throws Exception {
        int efd = UringSyscalls.eventfd(0, UringSyscalls.EFD_CLOEXEC);
        assertTrue(efd >= 0);
        try (RingThread r = RingThread.start("held", defaults().withEntries(8))) {
            MemorySegment buf = arena.allocate(8);
            UringRequest read = new UringRequest().prepRead(efd, buf, 0);
            UringRequest cmd = new UringRequest().prepUringCmd(file.fd(), 0x1234, arena.allocate(16));
            int[] result = {Integer.MIN_VALUE};
            Thread t = Thread.ofVirtual().start(() -> {
                try {
                    result[0] = r.executeForLast(LinkedRequests.chain(read, cmd));
                } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            });
            long deadline = System.nanoTime() + 20_000_000_000L;
            while (onOwner(r, () -> r.uringForOwner().heldSqes()) != 1) {
                assertTrue(System.nanoTime() < deadline, "the command's SQE was never held");
                Thread.sleep(5);
            }
            for (int i = 0; i < 40; i++) r.nop(); // wraps the 8-entry ring five times
            assertEquals(1, onOwner(r, () -> r.uringForOwner().heldSqes()));
            MemorySegment one = arena.allocate(ValueLayout.JAVA_LONG);
            one.set(ValueLayout.JAVA_LONG, 0, 1L);
            assertEquals(8, UringSyscalls.write(efd, one, 8));
            t.join(20_000);
            assertEquals(8, read.result(), "the head read the eventfd");
            assertTrue(result[0] < 0 && result[0] != -Errno.ECANCELED,
                    "the command was issued (a plain file refuses it), not cancelled: " + result[0]);
            assertEquals(0, onOwner(r, () -> r.uringForOwner().heldSqes()), "released at its completion");
        } finally {
            UringSyscalls.close(efd);
        }
    }

    /** A chain submitted to a closed ring fails every request, so a head that holds something releases it. */
    @Test
    void executeForLastOnAClosedRingFailsTheHeadToo() throws Exception {
        RingThread r = RingThread.start("closed", defaults().withEntries(32));
        r.close();
        UringRequest nop = new UringRequest().prepNop();
        Head head = new Head(new ArrayList<>(), nop);
        head.prepNop();
        assertThrows(RingClosedException.class, () -> r.executeForLast(LinkedRequests.chain(head, nop)));
        assertTrue(head.failedOnce, "the head's fail handler ran");
    }

    @Test
    void errorsMapToErrnoNames() throws IOException {
        MemorySegment buf = arena.allocate(4096, 4096);
        var e = assertThrows(ErrnoException.class, () -> ring.read(123456, buf, 0));
        assertEquals("EBADF", e.errnoName());
        assertTrue(e.getMessage().contains("EBADF"), e.getMessage());
        // A read-only descriptor of the file the test holds read-write: force-share, as the lock requires.
        PosixFileBackend ro = io.qblk.io.ImageLock.forceShared(() -> PosixFileBackend.open(dir.resolve("data"), true));
        try {
            var w = assertThrows(ErrnoException.class, () -> ring.write(ro.fd(), buf, 0));
            assertEquals("EBADF", w.errnoName());
        } finally {
            ro.close();
        }
    }

    @Test
    void thousandVirtualThreadsRandomIoThroughOneOwner() throws Exception {
        final int threads = 1000, blocksPerThread = 4, block = 4096, opsPerThread = 12;
        long fileSize = (long) threads * blocksPerThread * block;
        file.truncate(fileSize);
        int[][] version = new int[threads][blocksPerThread]; // per thread only: no sharing
        AtomicInteger verified = new AtomicInteger();
        ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
        try (ExecutorService vts = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int t = 0; t < threads; t++) {
                final int id = t;
                vts.submit(() -> {
                    try (Arena a = Arena.ofConfined()) {
                        SplittableRandom rnd = new SplittableRandom(id);
                        MemorySegment buf = a.allocate(block, 4096), expect = a.allocate(block, 4096);
                        for (int op = 0; op < opsPerThread; op++) {
                            int b = rnd.nextInt(blocksPerThread);
                            long off = ((long) b * threads + id) * block; // interleaved ownership
                            if (rnd.nextBoolean()) {
                                version[id][b]++;
                                fillBlock(buf, id, b, version[id][b]);
                                assertEquals(block, ring.write(file.fd(), buf, off));
                            } else {
                                assertEquals(block, ring.read(file.fd(), buf, off));
                                fillBlock(expect, id, b, version[id][b]);
                                assertEquals(-1, expect.mismatch(buf), "thread " + id + " block " + b);
                                verified.incrementAndGet();
                            }
                        }
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                });
            }
        }
        assertTrue(errors.isEmpty(), () -> "first error: " + errors.peek());
        assertTrue(verified.get() > 1000, "reads verified: " + verified.get());
        // Final state, read back through the ring from this (platform) thread.
        MemorySegment buf = arena.allocate(block, 4096), expect = arena.allocate(block, 4096);
        for (int id = 0; id < threads; id++) {
            for (int b = 0; b < blocksPerThread; b++) {
                ring.read(file.fd(), buf, ((long) b * threads + id) * block);
                fillBlock(expect, id, b, version[id][b]);
                assertEquals(-1, expect.mismatch(buf), "final thread " + id + " block " + b);
            }
        }
        // Batching: far fewer io_uring_enter calls than SQEs.
        assertTrue(ring.enterCalls() < ring.submittedSqes(),
                ring.enterCalls() + " enters for " + ring.submittedSqes() + " SQEs");
    }

    /** Version 0 is the zero block (a hole); later versions are a deterministic pattern. */
    private static void fillBlock(MemorySegment buf, int id, int b, int v) {
        if (v == 0) {
            buf.fill((byte) 0);
            return;
        }
        SplittableRandom r = new SplittableRandom(((long) id << 32) ^ ((long) b << 20) ^ v);
        for (int i = 0; i < buf.byteSize(); i += 8) buf.set(ValueLayout.JAVA_LONG, i, r.nextLong());
    }

    @Test
    void tinyRingAppliesBackPressureAndLosesNothing() throws Exception {
        try (RingThread small = RingThread.start("small-ring", defaults().withEntries(8))) {
            assertEquals(8, small.callOnOwner(() -> small.ring().sqEntries()));
            file.truncate(200 * 4096);
            AtomicInteger ok = new AtomicInteger();
            List<Future<?>> fs = new ArrayList<>();
            CountDownLatch go = new CountDownLatch(1);
            try (ExecutorService vts = Executors.newVirtualThreadPerTaskExecutor()) {
                for (int i = 0; i < 200; i++) {
                    final int id = i;
                    fs.add(vts.submit(() -> {
                        go.await();
                        try (Arena a = Arena.ofConfined()) {
                            MemorySegment buf = a.allocate(4096, 4096);
                            buf.fill((byte) id);
                            assertEquals(4096, small.write(file.fd(), buf, id * 4096L));
                            small.nop();
                            MemorySegment back = a.allocate(4096, 4096);
                            assertEquals(4096, small.read(file.fd(), back, id * 4096L));
                            assertEquals(-1, buf.mismatch(back));
                            ok.incrementAndGet();
                        }
                        return null;
                    }));
                }
                go.countDown();
                for (Future<?> f : fs) f.get(30, TimeUnit.SECONDS);
            }
            assertEquals(200, ok.get());
            assertTrue(small.submittedSqes() >= 600);
        }
    }

    @Test
    void ownerThreadSubmitsWithoutDeadlock() throws Exception {
        // Blocking execute from a task running on the owner thread itself.
        int r = ring.callOnOwner(() -> {
            assertTrue(ring.isOwnerThread());
            UringRequest req = new UringRequest().prepNop();
            ring.execute(req);
            ring.nop();
            return req.result();
        });
        assertEquals(0, r);

        // A completion handler that re-submits itself (the ublk FETCH -> COMMIT_AND_FETCH pattern).
        CountDownLatch done = new CountDownLatch(1);
        List<Thread> handlerThreads = new ArrayList<>();
        UringOp chain = new UringOp() {
            int rounds;
            @Override protected void prepare(Sqe sqe, int index) { sqe.prepNop(); }
            @Override protected void complete(int index, int res, int flags, long b0, long b1) {
                handlerThreads.add(Thread.currentThread());
                if (++rounds < 50) ring.submit(this);
                else done.countDown();
            }
            @Override protected void fail(IOException cause) {}
        };
        ring.submit(chain);
        assertTrue(done.await(10, TimeUnit.SECONDS));
        assertEquals(50, handlerThreads.size());
        assertTrue(handlerThreads.stream().allMatch(t -> t == ring.ownerThread()));
    }

    @Test
    void eachSubmissionRoutesToItsOwnHandler() throws Exception {
        int n = 500;
        int[] seen = new int[n];
        CountDownLatch all = new CountDownLatch(n);
        try (ExecutorService vts = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int i = 0; i < n; i++) {
                final int id = i;
                vts.submit(() -> ring.submit(new UringOp() {
                    @Override protected void prepare(Sqe sqe, int index) { sqe.prepNop(); }
                    @Override protected void complete(int index, int res, int flags, long b0, long b1) {
                        seen[id]++;
                        all.countDown();
                    }
                    @Override protected void fail(IOException cause) {}
                }));
            }
        }
        assertTrue(all.await(10, TimeUnit.SECONDS));
        for (int i = 0; i < n; i++) assertEquals(1, seen[i], "handler " + i);
    }

    @Test
    void closeFailsPendingAndLaterSubmissionsCleanly() throws Exception {
        RingThread r2 = RingThread.start("closing-ring", defaults().withEntries(8)
                .withCloseTimeout(Duration.ofSeconds(2)));
        // A READ on an empty eventfd never completes by itself: it is in flight when we close.
        int efd = UringSyscalls.eventfd(0, UringSyscalls.EFD_CLOEXEC);
        assertTrue(efd >= 0);
        try {
            MemorySegment buf = arena.allocate(8);
            CountDownLatch submitted = new CountDownLatch(1);
            Future<?> blocked;
            try (ExecutorService vts = Executors.newVirtualThreadPerTaskExecutor()) {
                blocked = vts.submit(() -> {
                    submitted.countDown();
                    return r2.read(efd, buf, 0);
                });
                submitted.await();
                Thread.sleep(100); // let it reach the kernel
                long t0 = System.nanoTime();
                r2.close();
                assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(3), "close is bounded");
                var e = assertThrows(java.util.concurrent.ExecutionException.class, () -> blocked.get(5, TimeUnit.SECONDS));
                assertTrue(e.getCause() instanceof IOException, e.getCause().toString());
                if (e.getCause() instanceof ErrnoException ee) assertEquals("ECANCELED", ee.errnoName());
            }
            assertTrue(r2.isClosed());
            assertThrows(RingClosedException.class, r2::nop);
            AtomicInteger failed = new AtomicInteger();
            r2.submit(new UringOp() {
                @Override protected void prepare(Sqe sqe, int index) { sqe.prepNop(); }
                @Override protected void complete(int index, int res, int flags, long b0, long b1) {}
                @Override protected void fail(IOException cause) { failed.incrementAndGet(); }
            });
            assertEquals(1, failed.get(), "a submission after close fails at once");
            r2.close(); // idempotent
        } finally {
            UringSyscalls.close(efd);
        }
    }

    @Test
    void ublkStyleRingCarriesFileIoAndCommandsAndOnlyTheOwnerEnters() throws Exception {
        // SINGLE_ISSUER makes the kernel refuse io_uring_enter from any task but the creator (EEXIST),
        // so this proves that neither submitters nor close ever enter the ring themselves.
        RingOptions opts = forUblk(16).withSetupFlags(
                IoUring.SETUP_SQE128 | IoUring.SETUP_CQE32 | IoUring.SETUP_SINGLE_ISSUER);
        try (RingThread q = RingThread.start("ublk-style", opts);
             UringFileBackend data = UringFileBackend.open(q, dir.resolve("img"), false, true)) {
            assertTrue(q.callOnOwner(() -> q.ring().sqe128() && q.ring().cqe32()));
            try (ExecutorService vts = Executors.newVirtualThreadPerTaskExecutor()) {
                List<Future<?>> fs = new ArrayList<>();
                for (int i = 0; i < 64; i++) {
                    final int id = i;
                    fs.add(vts.submit(() -> {
                        try (Arena a = Arena.ofConfined()) {
                            MemorySegment buf = a.allocate(4096, 4096);
                            buf.fill((byte) (id * 3));
                            data.write(id * 4096L, buf);
                            MemorySegment back = a.allocate(4096, 4096);
                            data.read(id * 4096L, back);
                            assertEquals(-1, buf.mismatch(back));
                        }
                        return null;
                    }));
                }
                for (Future<?> f : fs) f.get(30, TimeUnit.SECONDS);
            }
            data.datasync();
            // A URING_CMD with an 80-byte payload goes out in a 128-byte SQE; a plain file refuses it.
            MemorySegment payload = arena.allocate(80);
            payload.fill((byte) 0x5a);
            var e = assertThrows(ErrnoException.class, () -> q.uringCmd(data.fd(), 0x1234, payload));
            assertTrue(e.getMessage().startsWith("io_uring cmd 0x1234"), e.getMessage());
        }
    }

    @Test
    void callOnOwnerPropagatesResultsAndExceptions() throws IOException {
        assertEquals("q", ring.callOnOwner(() -> ring.isOwnerThread() ? "q" : "not owner"));
        var e = assertThrows(ErrnoException.class, () -> ring.callOnOwner(() -> {
            throw new ErrnoException("from owner", Errno.EIO);
        }));
        assertEquals("EIO", e.errnoName());
        assertThrows(IllegalStateException.class, ring::ring, "the ring is not reachable from other threads");
    }

    @Test
    void sequentialSubmittersNeverMissAWakeUp() throws Exception {
        // Each NOP lets the owner fall asleep again, so every call exercises the eventfd wake-up race.
        for (int i = 0; i < 3000; i++) ring.nop();
        try (ExecutorService vts = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<?>> fs = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                fs.add(vts.submit(() -> {
                    for (int i = 0; i < 1500; i++) ring.nop();
                    return null;
                }));
            }
            for (Future<?> f : fs) f.get(30, TimeUnit.SECONDS);
        }
        assertTrue(ring.wakeUps() > 0, "the owner slept and was woken through the eventfd");
    }

    @Test
    void closeUnderLoadEndsEverySubmitter() throws Exception {
        RingThread r2 = RingThread.start("busy-ring", defaults().withEntries(8));
        AtomicInteger completed = new AtomicInteger(), refused = new AtomicInteger();
        ConcurrentLinkedQueue<Throwable> unexpected = new ConcurrentLinkedQueue<>();
        try (ExecutorService vts = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int t = 0; t < 100; t++) {
                vts.submit(() -> {
                    try (Arena a = Arena.ofConfined()) {
                        MemorySegment buf = a.allocate(4096, 4096);
                        while (true) {
                            try {
                                r2.write(file.fd(), buf, 0);
                                completed.incrementAndGet();
                            } catch (RingClosedException e) {
                                refused.incrementAndGet();
                                return;
                            } catch (ErrnoException e) {
                                if (e.errno() != Errno.ECANCELED) unexpected.add(e);
                                refused.incrementAndGet();
                                return;
                            }
                        }
                    } catch (Throwable e) {
                        unexpected.add(e);
                    }
                });
            }
            Thread.sleep(300);
            r2.close();
        } // waits for all 100 submitters: a lost request would hang here (and hit @Timeout)
        assertTrue(unexpected.isEmpty(), () -> "unexpected: " + unexpected.peek());
        assertEquals(100, refused.get(), "every submitter saw the close");
        assertTrue(completed.get() > 100, "work was done before the close: " + completed.get());
    }

    @Test
    void probeAndFixedFiles() throws IOException {
        assertTrue(ring.supports(Opcode.NOP));
        assertTrue(ring.supports(Opcode.READ));
        assertTrue(ring.supports(Opcode.URING_CMD), "kernel 5.19+ has URING_CMD");
        assertFalse(ring.supports(255));
        MemorySegment src = pattern(4096, 21), dst = arena.allocate(4096, 4096);
        ring.write(file.fd(), src, 0);
        ring.registerFiles(file.fd());
        UringRequest r = new UringRequest();
        ring.execute(r.prepRead(0, dst, 0).sqeFlags(Sqe.FIXED_FILE)); // fd 0 = fixed file index 0
        assertEquals(4096, r.checkedResult("fixed-file read"));
        assertEquals(-1, src.mismatch(dst));
        ring.execute(r.prepRead(1, dst, 0).sqeFlags(Sqe.FIXED_FILE));
        assertEquals(-Errno.EBADF, r.result(), "no fixed file 1");
    }
}
