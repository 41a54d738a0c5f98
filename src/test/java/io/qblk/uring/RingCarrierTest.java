package io.qblk.uring;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.PosixFileBackend;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.ReentrantLock;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The per-queue carrier: virtual threads made by {@link RingThread#newThread} run on the ring's owner
 * OS thread when carrying is on (surefire opens java.lang), on other threads when it is off, and in a
 * JVM without the opening the probe falls back with one log line.
 */
@Timeout(60)
public class RingCarrierTest implements RingModeSuite {
    private static final MethodHandle GETTID = Linker.nativeLinker().downcallHandle(
            Linker.nativeLinker().defaultLookup().find("gettid").orElseThrow(), FunctionDescriptor.of(ValueLayout.JAVA_INT));

    @TempDir
    Path dir;

    public static int tid() {
        try {
            return (int) GETTID.invokeExact();
        } catch (Throwable t) {
            throw new AssertionError(t);
        }
    }

    /** 64 threads, each doing I/O round trips; returns the OS threads they ran on. */
    private Set<Integer> runThreads(RingThread ring, PosixFileBackend file, int threads, int rounds) throws Exception {
        Set<Integer> tids = ConcurrentHashMap.newKeySet();
        AtomicReference<Throwable> err = new AtomicReference<>();
        List<Thread> ts = new ArrayList<>();
        try (Arena arena = Arena.ofShared()) {
            for (int t = 0; t < threads; t++) {
                int id = t;
                MemorySegment buf = arena.allocate(4096, 4096);
                ts.add(ring.newThread("carried-" + t, () -> {
                    try {
                        for (int r = 0; r < rounds; r++) {
                            tids.add(tid());
                            buf.fill((byte) (id + r));
                            assertEquals(4096, ring.write(file.fd(), buf, id * 4096L));
                            tids.add(tid());
                            buf.fill((byte) 0);
                            assertEquals(4096, ring.read(file.fd(), buf, id * 4096L));
                            assertEquals((byte) (id + r), buf.get(ValueLayout.JAVA_BYTE, 4095));
                            ring.nop();
                        }
                    } catch (Throwable e) {
                        err.compareAndSet(null, e);
                    }
                }));
            }
            for (Thread t : ts) t.start();
            for (Thread t : ts) assertTrue(t.join(java.time.Duration.ofSeconds(30)), t + " ended");
        }
        if (err.get() != null) throw new AssertionError("a carried thread failed", err.get());
        return tids;
    }

    @Test
    void carriedThreadsRunOnTheOwnerThreadWithoutWakeUps() throws Exception {
        assertTrue(VirtualCarrier.available(), "surefire passes --add-opens java.base/java.lang: " + VirtualCarrier.unavailableReason());
        try (RingThread ring = RingThread.start("carrier", defaults().withEntries(64).withCarrier(true));
             PosixFileBackend file = PosixFileBackend.open(dir.resolve("f"), false, true)) {
            assertTrue(ring.carriesVirtualThreads());
            int ownerTid = ring.callOnOwner(RingCarrierTest::tid);
            runThreads(ring, file, 4, 1); // warm-up (thread starts wake the owner from outside)
            long wakes = ring.wakeUps();
            Set<Integer> tids = runThreads(ring, file, 64, 50);
            assertEquals(Set.of(ownerTid), tids, "every carried thread ran on the ring's owner thread");
            // 64 starts come from this thread (remote: may wake the owner); 64 x 50 x 3 requests must not.
            assertTrue(ring.wakeUps() - wakes <= 64 + 2, "wake-ups: " + (ring.wakeUps() - wakes));
            assertTrue(ring.enterCalls() < ring.submittedSqes(), "requests of several threads share an io_uring_enter");
        }
    }

    @Test
    void carrierOffRunsOnTheDefaultScheduler() throws Exception {
        try (RingThread ring = RingThread.start("no-carrier", defaults().withEntries(64).withCarrier(false));
             PosixFileBackend file = PosixFileBackend.open(dir.resolve("f"), false, true)) {
            assertFalse(ring.carriesVirtualThreads());
            int ownerTid = ring.callOnOwner(RingCarrierTest::tid);
            Set<Integer> tids = runThreads(ring, file, 16, 20);
            assertFalse(tids.contains(ownerTid), "default-scheduler threads never run on the ring thread");
        }
    }

    @Test
    void carriedThreadsWakeFromOtherThreadsAndTimedParks() throws Exception {
        try (RingThread ring = RingThread.start("carrier-remote", defaults().withCarrier(true))) {
            assertTrue(ring.carriesVirtualThreads());
            int ownerTid = ring.callOnOwner(RingCarrierTest::tid);
            ReentrantLock lock = new ReentrantLock();
            lock.lock(); // held by this platform thread: the carried thread parks on it
            AtomicInteger steps = new AtomicInteger();
            AtomicInteger wrongThread = new AtomicInteger();
            Thread t = ring.newThread("waiter", () -> {
                lock.lock(); // parks; unparked by the unlock below (another thread)
                try {
                    if (tid() != ownerTid) wrongThread.incrementAndGet();
                    steps.incrementAndGet();
                } finally {
                    lock.unlock();
                }
                try {
                    Thread.sleep(20); // timed park: the JDK's timer unparks it from its own thread
                    ring.nop();
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
                if (tid() != ownerTid) wrongThread.incrementAndGet();
                steps.incrementAndGet();
            });
            t.start();
            Thread.sleep(100);
            assertEquals(0, steps.get(), "still waiting for the lock");
            lock.unlock();
            assertTrue(t.join(java.time.Duration.ofSeconds(10)));
            assertEquals(2, steps.get());
            assertEquals(0, wrongThread.get());
        }
    }

    @Test
    void closingEndsCarriedThreadsParkedOnInFlightRequests() throws Throwable {
        RingThread ring = RingThread.start("carrier-close", defaults().withCarrier(true)
                .withCloseTimeout(java.time.Duration.ofSeconds(2)));
        int[] pipe = new int[2];
        try (Arena arena = Arena.ofShared()) {
            MemorySegment fds = arena.allocate(8, 4);
            MethodHandle pipeCall = Linker.nativeLinker().downcallHandle(
                    Linker.nativeLinker().defaultLookup().find("pipe").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS));
            assertEquals(0, (int) pipeCall.invokeExact(fds));
            pipe[0] = fds.get(ValueLayout.JAVA_INT, 0);
            pipe[1] = fds.get(ValueLayout.JAVA_INT, 4);
            List<Thread> ts = new ArrayList<>();
            AtomicInteger ended = new AtomicInteger();
            for (int i = 0; i < 8; i++) {
                MemorySegment buf = arena.allocate(64);
                Thread t = ring.newThread("reader-" + i, () -> {
                    try {
                        ring.read(pipe[0], buf, -1); // no data ever comes: in flight until the close
                    } catch (IOException e) {
                        ended.incrementAndGet();
                    }
                    try { // a request after the close fails at once
                        ring.nop();
                    } catch (IOException e) {
                        ended.incrementAndGet();
                    }
                });
                ts.add(t);
                t.start();
            }
            Thread.sleep(200);
            ring.close();
            for (Thread t : ts) assertTrue(t.join(java.time.Duration.ofSeconds(10)), t + " ended after the close");
            // The read either failed (closed) or completed with -ECANCELED (no exception): the nop fails for all.
            assertTrue(ended.get() >= 8, "ended with errors: " + ended.get());
        } finally {
            ring.close();
            io.qblk.io.LibC.close(pipe[0]);
            io.qblk.io.LibC.close(pipe[1]);
        }
    }

    /**
     * A ublk-shaped workload on the carrier: 16 carried threads, each bound to the ring as its caller
     * ring, write, flush and read a write-through qcow2 image whose file is opened cache=none on the
     * caller ring; the data reads back, aligned I/O went O_DIRECT (where the file system allows it),
     * and no request made the carried threads leave the owner thread.
     */
    @Test
    void carriedQcow2WritethroughWithDirectIoOnTheCallerRing() throws Exception {
        Path img = dir.resolve("c.qcow2");
        io.qblk.qcow2.Qcow2Image.create(img, io.qblk.qcow2.CreateOptions.defaults(64L << 20));
        io.qblk.io.IoBackend file = FileBackends.openOnCallerRing(img, false, 0, io.qblk.io.CacheMode.NONE);
        io.qblk.qcow2.OpenOptions o = io.qblk.qcow2.OpenOptions.defaults()
                .withMetadataWrite(io.qblk.qcow2.MetadataWrite.WRITETHROUGH).withCacheMode(io.qblk.io.CacheMode.NONE);
        try (RingThread ring = RingThread.start("carrier-qcow2", forUblk(64));
             io.qblk.qcow2.Qcow2Image image = io.qblk.qcow2.Qcow2Image.open(file, o, img);
             Arena arena = Arena.ofShared()) {
            assertTrue(ring.carriesVirtualThreads());
            int ownerTid = ring.callOnOwner(RingCarrierTest::tid);
            Set<Integer> tids = ConcurrentHashMap.newKeySet();
            AtomicReference<Throwable> err = new AtomicReference<>();
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < 16; t++) {
                int id = t;
                MemorySegment buf = arena.allocate(65536, 4096);
                ts.add(ring.newThread("tag-" + t, () -> new CallerRing(ring).run(() -> {
                    try {
                        for (int r = 0; r < 8; r++) {
                            long off = (id * 8L + r) * 65536;
                            buf.fill((byte) (id * 8 + r + 1));
                            image.write(off, buf);
                            tids.add(tid());
                            if (r % 4 == 3) image.flush();
                            buf.fill((byte) 0);
                            image.read(off, buf);
                            tids.add(tid());
                            assertEquals((byte) (id * 8 + r + 1), buf.get(ValueLayout.JAVA_BYTE, 65535));
                        }
                    } catch (Throwable e) {
                        err.compareAndSet(null, e);
                    }
                })));
            }
            long wakes = ring.wakeUps();
            for (Thread t : ts) t.start();
            for (Thread t : ts) assertTrue(t.join(java.time.Duration.ofSeconds(40)), t + " ended");
            if (err.get() != null) throw new AssertionError("a carried thread failed", err.get());
            assertEquals(Set.of(ownerTid), tids);
            assertTrue(ring.wakeUps() - wakes <= 16 + 2, "only the starts may wake the owner: " + (ring.wakeUps() - wakes));
            var direct = (io.qblk.io.DirectIoBackend) file;
            if (direct.directDisabledReason() == null) assertTrue(direct.directOps() > 0, "aligned data I/O went O_DIRECT");
            else System.out.println("O_DIRECT not available here: " + direct.directDisabledReason());
        } finally {
            file.close();
        }
    }

    /** The fallback: a JVM without --add-opens (and one with -Dqblk.carrier=off) keeps the default scheduler, logs one line. */
    @Test
    void withoutTheOpeningTheProbeFallsBackWithOneLogLine() throws Exception {
        for (String mode : new String[] {"no-opens", "off"}) {
            List<String> cmd = new ArrayList<>(List.of(ProcessHandle.current().info().command().orElseThrow(),
                    "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path")));
            if (mode.equals("off")) cmd.addAll(List.of("--add-opens", "java.base/java.lang=ALL-UNNAMED", "-Dqblk.carrier=off"));
            cmd.add(CarrierProbeMain.class.getName());
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            assertTrue(p.waitFor(60, TimeUnit.SECONDS));
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertEquals(0, p.exitValue(), out);
            assertTrue(out.contains("available=false"), out);
            assertTrue(out.contains("carries=false"), out);
            assertTrue(out.contains("nop=ok"), out);
            long lines = out.lines().filter(l -> l.contains("per-queue ring carrier unavailable")).count();
            assertEquals(1, lines, out);
            if (mode.equals("no-opens")) assertTrue(out.contains("add-opens"), out);
            else assertTrue(out.contains("turned off"), out);
        }
    }

    /** Run in a child JVM by the fallback test. */
    public static final class CarrierProbeMain {
        public static void main(String[] args) throws Exception {
            System.out.println("available=" + VirtualCarrier.available());
            try (RingThread ring = RingThread.start("child", RingOptions.defaults().withCarrier(true))) {
                System.out.println("carries=" + ring.carriesVirtualThreads());
                AtomicReference<String> r = new AtomicReference<>("nop=failed");
                Thread t = ring.newThread("t", () -> {
                    try {
                        ring.nop();
                        r.set("nop=ok");
                    } catch (IOException e) {
                        r.set("nop=" + e);
                    }
                });
                t.start();
                t.join();
                System.out.println(r.get());
            }
        }
    }
}
