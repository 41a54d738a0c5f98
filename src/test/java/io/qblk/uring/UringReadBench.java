package io.qblk.uring;

import io.qblk.io.IoBackend;
import io.qblk.io.PosixFileBackend;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.LongAdder;

/**
 * Throwaway measurement (not a test, not run by surefire): 4 KiB random reads at queue depth 32 on a
 * 256 MiB file through {@link UringFileBackend} (32 virtual threads, one ring owner) and through
 * {@link PosixFileBackend} (32 platform threads, and 32 virtual threads).
 *
 * <pre>java --enable-native-access=ALL-UNNAMED -cp target/classes:target/test-classes io.qblk.uring.UringReadBench [dir] [seconds]</pre>
 */
public final class UringReadBench {
    static final long FILE_SIZE = 256L << 20;
    static final int DEPTH = 32, BLOCK = 4096;

    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args.length > 0 ? args[0] : System.getProperty("java.io.tmpdir"));
        int seconds = args.length > 1 ? Integer.parseInt(args[1]) : 3;
        Path file = dir.resolve("qblk-uring-bench.img");
        try {
            try (PosixFileBackend w = PosixFileBackend.open(file, false, true); Arena a = Arena.ofConfined()) {
                MemorySegment chunk = a.allocate(1 << 20, 4096);
                SplittableRandom r = new SplittableRandom(1);
                for (long off = 0; off < FILE_SIZE; off += chunk.byteSize()) {
                    for (int i = 0; i < chunk.byteSize(); i += 8) chunk.set(java.lang.foreign.ValueLayout.JAVA_LONG, i, r.nextLong());
                    w.write(off, chunk);
                }
                w.datasync();
            }
            for (int round = 0; round < 2; round++) {
                int flags = Integer.getInteger("bench.flags", 0);
                try (RingThread ring = RingThread.start("bench-ring", RingOptions.defaults().withEntries(64).withSetupFlags(flags));
                     UringFileBackend b = UringFileBackend.open(ring, file, true, false)) {
                    double iops = run(b, true, seconds);
                    System.out.printf("uring  (32 virtual threads, 1 ring owner): %,10.0f IOPS  (%.1f SQEs per io_uring_enter, %.2f eventfd wake-ups per I/O)%n",
                            iops, ring.submittedSqes() / (double) Math.max(1, ring.enterCalls()),
                            ring.wakeUps() / (double) Math.max(1, ring.submittedSqes()));
                }
                try (PosixFileBackend b = PosixFileBackend.open(file, true)) {
                    System.out.printf("posix  (32 platform threads, pread)      : %,10.0f IOPS%n", run(b, false, seconds));
                    System.out.printf("posix  (32 virtual threads, pread)       : %,10.0f IOPS%n", run(b, true, seconds));
                }
            }
        } finally {
            Files.deleteIfExists(file);
        }
    }

    static double run(IoBackend b, boolean virtual, int seconds) throws Exception {
        AtomicBoolean measuring = new AtomicBoolean(false), stop = new AtomicBoolean(false);
        LongAdder ops = new LongAdder();
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < DEPTH; t++) {
            final long seed = t;
            Runnable body = () -> {
                try (Arena a = Arena.ofConfined()) {
                    MemorySegment buf = a.allocate(BLOCK, 4096);
                    SplittableRandom r = new SplittableRandom(seed);
                    long blocks = FILE_SIZE / BLOCK;
                    while (!stop.get()) {
                        b.read(r.nextLong(blocks) * BLOCK, buf);
                        if (measuring.get()) ops.increment();
                    }
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            };
            threads.add(virtual ? Thread.ofVirtual().start(body) : Thread.ofPlatform().start(body));
        }
        Thread.sleep(1000); // warm-up
        measuring.set(true);
        long t0 = System.nanoTime();
        Thread.sleep(seconds * 1000L);
        long n = ops.sum();
        long t1 = System.nanoTime();
        stop.set(true);
        for (Thread t : threads) t.join();
        return n / ((t1 - t0) / 1e9);
    }
}
