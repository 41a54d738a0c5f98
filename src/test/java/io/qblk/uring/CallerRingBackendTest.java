package io.qblk.uring;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.target.BlockTarget;
import io.qblk.target.TargetOpener;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The caller-ring backend as ublk queues use it: each thread's I/O goes through the ring bound to
 * it with {@link CallerRing#run}, unbound threads fall back to syscalls, registered buffers turn into
 * READ_FIXED/WRITE_FIXED, and failures come back as {@link ErrnoException}s on every path.
 */
@Timeout(60)
class CallerRingBackendTest {
    @TempDir
    Path dir;
    RingThread ringA, ringB;
    Arena arena;

    @BeforeEach
    void setUp() throws IOException {
        ringA = RingThread.start("caller-a", RingOptions.forUblk(32));
        ringB = RingThread.start("caller-b", RingOptions.forUblk(32));
        arena = Arena.ofShared();
    }

    @AfterEach
    void tearDown() {
        ringA.close();
        ringB.close();
        arena.close();
    }

    private static void fill(MemorySegment buf, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        for (int i = 0; i < buf.byteSize(); i += 8) buf.set(ValueLayout.JAVA_LONG, i, r.nextLong());
    }

    private static void runBound(CallerRing binding, IoTask task) throws Exception {
        AtomicReference<Exception> err = new AtomicReference<>();
        Thread t = Thread.ofVirtual().start(() -> binding.run(() -> {
            try {
                task.run();
            } catch (Exception e) {
                err.set(e);
            }
        }));
        t.join();
        if (err.get() != null) throw err.get();
    }

    interface IoTask {
        void run() throws Exception;
    }

    @Test
    void concurrentVirtualThreadsUseTheRingTheyAreBoundTo() throws Exception {
        Path p = dir.resolve("f");
        Files.write(p, new byte[0]);
        int threads = 64, chunk = 8192, rounds = 4;
        try (UringFileBackend b = UringFileBackend.openForCallerRing(p, false)) {
            long a0 = ringA.submittedSqes(), b0 = ringB.submittedSqes();
            try (ExecutorService vts = Executors.newVirtualThreadPerTaskExecutor()) {
                List<Future<?>> fs = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    int id = t;
                    CallerRing binding = new CallerRing(id % 2 == 0 ? ringA : ringB);
                    fs.add(vts.submit(() -> {
                        binding.run(() -> {
                            assertSame(binding, CallerRing.current());
                            try (Arena a = Arena.ofConfined()) {
                                MemorySegment buf = a.allocate(chunk, 4096), back = a.allocate(chunk, 4096);
                                for (int r = 0; r < rounds; r++) {
                                    fill(buf, id * 100L + r);
                                    b.write((long) id * chunk, buf);
                                    b.read((long) id * chunk, back);
                                    assertEquals(-1, buf.mismatch(back), "thread " + id + " round " + r);
                                }
                                b.datasync();
                            } catch (IOException e) {
                                throw new AssertionError(e);
                            }
                        });
                        assertNull(CallerRing.current(), "the binding ends with run()");
                        return null;
                    }));
                }
                for (Future<?> f : fs) f.get(30, TimeUnit.SECONDS);
            }
            int perRing = threads / 2 * (2 * rounds + 1);
            assertEquals(2L * perRing, b.ringOps());
            assertEquals(0, b.syscallOps(), "no bound call may fall back to syscalls");
            assertTrue(ringA.submittedSqes() - a0 >= perRing, "ring A carried its threads' I/O");
            assertTrue(ringB.submittedSqes() - b0 >= perRing, "ring B carried its threads' I/O");
        }
        assertEquals((long) threads * chunk, Files.size(p));
    }

    @Test
    void aThreadBoundToOneRingLeavesTheOtherUntouched() throws Exception {
        Path p = dir.resolve("one");
        Files.write(p, new byte[0]);
        try (UringFileBackend b = UringFileBackend.openForCallerRing(p, false)) {
            long before = ringB.submittedSqes(), enters = ringB.enterCalls();
            runBound(new CallerRing(ringA), () -> {
                MemorySegment s = arena.allocate(4096, 4096);
                for (int i = 0; i < 20; i++) b.write(i * 4096L, s);
                b.datasync();
            });
            assertEquals(21, b.ringOps());
            assertEquals(before, ringB.submittedSqes());
            assertEquals(enters, ringB.enterCalls());
        }
    }

    @Test
    void smallTransfersUseSyscallsBelowTheRingThreshold() throws Exception {
        // The ublk default (FileIo.CALLER_RING_LARGE): under 128 KiB pread/pwrite on the
        // bound thread, from 128 KiB on the ring; fdatasync and fallocate as syscalls; same data either way.
        Path p = dir.resolve("threshold");
        Files.write(p, new byte[0]);
        long min = io.qblk.target.FileIo.CALLER_RING_LARGE.ringMinBytes();
        assertEquals(131072, min);
        try (UringFileBackend b = UringFileBackend.openForCallerRing(p, false, min)) {
            MemorySegment small = arena.allocate(4096, 4096), large = arena.allocate(131072, 4096);
            MemorySegment back = arena.allocate(131072, 4096);
            fill(small, 3);
            fill(large, 4);
            runBound(new CallerRing(ringA), () -> {
                b.write(0, small);        // syscall
                b.write(65536, large);    // ring (128 KiB)
                b.datasync();             // syscall
                b.zeroRange(262144, 4096); // syscall (fallocate)
                b.read(65536, back);      // ring
                MemorySegment s2 = arena.allocate(4096, 4096);
                b.read(0, s2);            // syscall
                assertEquals(-1, small.mismatch(s2));
            });
            assertEquals(-1, large.mismatch(back));
            assertEquals(4, b.syscallOps());
            assertEquals(2, b.ringOps());
        }
        assertThrows(IllegalArgumentException.class, () -> UringFileBackend.openForCallerRing(p, false, -1));
    }

    @Test
    void zeroRangeIsAnFallocateThroughTheBoundRing() throws Exception {
        // A ring thread that carries its tags must never block: zeroing (an allocating write's
        // partial cluster) is a fallocate through the ring, not a syscall and not a write of zeroes,
        // also behind the cache=none wrapper the ublk targets use.
        Path p = dir.resolve("zero");
        Files.write(p, new byte[0]);
        MemorySegment w = arena.allocate(65536, 4096), r = arena.allocate(65536, 4096);
        fill(w, 7);
        try (UringFileBackend b = UringFileBackend.openForCallerRing(p, false)) {
            runBound(new CallerRing(ringA), () -> {
                b.write(0, w);
                long before = b.ringOps();
                b.zeroRange(4096, 8192);            // inside the file
                b.zeroRange(131072, 65536);         // past its end: the file grows
                assertTrue(b.ringOps() - before >= 2, "fallocate through the ring");
            });
            assertEquals(0, b.syscallOps());
        }
        try (io.qblk.io.IoBackend direct = FileBackends.openOnCallerRing(p, false, 0, io.qblk.io.CacheMode.NONE)) {
            runBound(new CallerRing(ringA), () -> {
                direct.zeroRange(16384, 4096);      // cache=none: the same ring path
                direct.read(0, r);
            });
        }
        assertEquals(196608, Files.size(p));
        MemorySegment expect = arena.allocate(65536, 4096);
        expect.copyFrom(w);
        expect.asSlice(4096, 8192).fill((byte) 0);
        expect.asSlice(16384, 4096).fill((byte) 0);
        assertEquals(-1, expect.mismatch(r));
        byte[] all = Files.readAllBytes(p);
        for (int i = 131072; i < all.length; i++) assertEquals(0, all[i], "byte " + i);
    }

    @Test
    void unboundOrClosedRingFallsBackToSyscallsOnTheSameFile() throws Exception {
        Path p = dir.resolve("fallback");
        Files.write(p, new byte[0]);
        try (UringFileBackend b = UringFileBackend.openForCallerRing(p, false)) {
            assertNull(CallerRing.current());
            MemorySegment w = arena.allocate(65536, 4096), r = arena.allocate(65536, 4096);
            fill(w, 1);
            b.write(4096, w); // unbound: pwrite
            b.datasync();
            assertEquals(2, b.syscallOps());
            assertEquals(0, b.ringOps());
            runBound(new CallerRing(ringA), () -> b.read(4096, r)); // the ring sees the pwrite
            assertEquals(-1, w.mismatch(r));
            assertEquals(1, b.ringOps());

            fill(w, 2);
            runBound(new CallerRing(ringA), () -> b.write(0, w));
            r.fill((byte) 0);
            b.read(0, r); // pread sees the ring's write
            assertEquals(-1, w.mismatch(r));

            // Reads past end of file are zero-filled on both paths.
            MemorySegment tail = arena.allocate(8192, 4096);
            tail.fill((byte) 7);
            b.read(b.size() - 4096, tail);
            for (int i = 4096; i < 8192; i++) assertEquals(0, tail.get(ValueLayout.JAVA_BYTE, i));
            tail.fill((byte) 7);
            runBound(new CallerRing(ringB), () -> b.read(b.size() - 4096, tail));
            for (int i = 4096; i < 8192; i++) assertEquals(0, tail.get(ValueLayout.JAVA_BYTE, i));

            // A binding whose ring closed (a queue tearing down) is ignored: syscalls again.
            RingThread gone = RingThread.start("gone", RingOptions.defaults().withEntries(8));
            gone.close();
            long sys = b.syscallOps();
            runBound(new CallerRing(gone), () -> {
                assertNull(CallerRing.current());
                b.read(0, r);
            });
            assertEquals(sys + 1, b.syscallOps());
            assertEquals(-1, w.mismatch(r));
        }
    }

    @Test
    void registeredTagBufferGoesOutAsFixedIo() throws Exception {
        Path p = dir.resolve("fixed");
        Files.write(p, new byte[0]);
        MemorySegment tagBuf = arena.allocate(3 * 65536, 4096);
        MemorySegment other = arena.allocate(65536, 4096);
        ringA.registerBuffers(other, tagBuf); // the tag buffer is fixed buffer 1
        try (UringFileBackend b = UringFileBackend.openForCallerRing(p, false)) {
            CallerRing binding = new CallerRing(ringA, tagBuf, 1);
            assertEquals(1, binding.fixedIndexFor(tagBuf.asSlice(65536, 4096)));
            assertEquals(-1, binding.fixedIndexFor(other), "memory outside the tag buffer");
            assertEquals(-1, binding.fixedIndexFor(tagBuf.asSlice(0, 4096).reinterpret(4 * 65536)), "runs past its end");
            fill(tagBuf, 9);
            runBound(binding, () -> {
                b.write(0, tagBuf.asSlice(0, 65536));
                b.write(65536, tagBuf.asSlice(65536, 2 * 65536));
                b.read(0, other); // not registered as the tag's buffer: plain READ
            });
            assertEquals(2, b.fixedBufferOps());
            assertEquals(3, b.ringOps());
            assertEquals(-1, tagBuf.asSlice(0, 65536).mismatch(other));
            MemorySegment copy = arena.allocate(tagBuf.byteSize(), 4096);
            copy.copyFrom(tagBuf);
            tagBuf.fill((byte) 0);
            runBound(binding, () -> b.read(0, tagBuf.asSlice(0, 3 * 65536)));
            assertEquals(3, b.fixedBufferOps());
            assertEquals(-1, copy.mismatch(tagBuf));
        }
    }

    @Test
    void errorsAreErrnoExceptionsOnBothPaths() throws Exception {
        Path p = dir.resolve("ro");
        Files.write(p, new byte[8192]);
        try (UringFileBackend b = UringFileBackend.openForCallerRing(p, true)) {
            assertTrue(b.readOnly());
            MemorySegment s = arena.allocate(4096, 4096);
            ErrnoException viaRing = assertThrows(ErrnoException.class,
                    () -> runBound(new CallerRing(ringA), () -> b.write(0, s)));
            assertEquals(Errno.EBADF, viaRing.errno());
            assertTrue(viaRing.getMessage().contains("write " + p) && viaRing.getMessage().contains("EBADF"), viaRing.getMessage());
            ErrnoException viaSyscall = assertThrows(ErrnoException.class, () -> b.write(0, s));
            assertEquals(Errno.EBADF, viaSyscall.errno());
            ErrnoException badOffset = assertThrows(ErrnoException.class,
                    () -> runBound(new CallerRing(ringB), () -> b.read(-4096, s)));
            assertEquals(Errno.EINVAL, badOffset.errno());
            ErrnoException syncRo = assertThrows(ErrnoException.class,
                    () -> runBound(new CallerRing(ringB), () -> b.allocate(0, 4096)));
            assertEquals(Errno.EBADF, syncRo.errno());
        }
        assertThrows(java.nio.file.NoSuchFileException.class, () -> UringFileBackend.openForCallerRing(dir.resolve("missing"), false));
    }

    /** The ublk layout: one qcow2 image shared by two queues, each queue's tags on its own ring. */
    @Test
    void qcow2TargetSharedByTwoQueueRingsStaysClean() throws Exception {
        Path p = dir.resolve("shared.qcow2");
        try (var f = io.qblk.io.PosixFileBackend.open(p, false, true)) {
            Qcow2Image.create(f, CreateOptions.defaults(64L << 20).withClusterSize(4096));
        }
        int tags = 48, chunk = 20 * 1024;
        long a0 = ringA.submittedSqes(), b0 = ringB.submittedSqes();
        try (BlockTarget t = TargetOpener.open(p, io.qblk.target.TargetOptions.defaults().withFileIo(io.qblk.target.FileIo.CALLER_RING))) {
            try (ExecutorService vts = Executors.newVirtualThreadPerTaskExecutor()) {
                List<Future<?>> fs = new ArrayList<>();
                for (int i = 0; i < tags; i++) {
                    int id = i;
                    CallerRing binding = new CallerRing(id % 2 == 0 ? ringA : ringB);
                    fs.add(vts.submit(() -> {
                        binding.run(() -> {
                            try (Arena a = Arena.ofConfined()) {
                                MemorySegment buf = a.allocate(chunk, 4096), back = a.allocate(chunk, 4096);
                                fill(buf, id);
                                t.write(offsetOf(id, tags), buf, id % 7 == 0);
                                t.read(offsetOf(id, tags), back);
                                assertEquals(-1, buf.mismatch(back), "tag " + id);
                                if (id % 5 == 0) t.flush();
                            } catch (IOException e) {
                                throw new AssertionError(e);
                            }
                        });
                        return null;
                    }));
                }
                for (Future<?> f : fs) f.get(30, TimeUnit.SECONDS);
            }
            assertTrue(ringA.submittedSqes() - a0 > tags / 2, "queue A's ring carried data and metadata I/O");
            assertTrue(ringB.submittedSqes() - b0 > tags / 2, "queue B's ring carried data and metadata I/O");
            t.flush(); // unbound (like the shutdown flush): syscalls
        }
        Process check = new ProcessBuilder("qemu-img", "check", "-f", "qcow2", p.toString()).redirectErrorStream(true).start();
        String out = new String(check.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(check.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, check.exitValue(), out);
        try (BlockTarget t = TargetOpener.open(p, io.qblk.target.TargetOptions.defaults().withFormat(io.qblk.target.ImageFormat.QCOW2).withReadOnly(true)); Arena a = Arena.ofConfined()) {
            MemorySegment want = a.allocate(chunk, 4096), got = a.allocate(chunk, 4096);
            for (int id = 0; id < tags; id++) {
                fill(want, id);
                t.read(offsetOf(id, tags), got);
                assertEquals(-1, want.mismatch(got), "tag " + id + " after reopen");
            }
        }
    }

    private static long offsetOf(int id, int tags) {
        return ((64L << 20) / tags) * id / 512 * 512 + 512L * (id % 9);
    }
}
