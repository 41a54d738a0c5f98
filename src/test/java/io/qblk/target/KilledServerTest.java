package io.qblk.target;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.IoBackend;
import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.MetadataWrite;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * kill -9 of a write-through server in the middle of concurrent allocating and in-place writes and
 * guest flushes, as e2e-ublk's "fio across recovery" does in the VM, without the VM: the file is
 * taken as the kill leaves it (every file operation that returned is in it, none after), opened
 * the way {@code qblk ublk recover} opens it, and every guest write that completed before the kill
 * must read back. Many kill moments per run; the shuffles and kill points come from a printed seed
 * (system property qblk.killSeed in the test JVM), thread timing still varies. docs/ordering.md W1.
 */
@Timeout(300)
class KilledServerTest {
    static final int CS = 64 << 10, BS = 16 << 10, WRITERS = 8;
    static final long VSIZE = 1L << 30;
    /** Two regions in different L2 tables, as the fio jobs at 640M and 768M of e2e-ublk. */
    static final long[] REGIONS = {640L << 20, 768L << 20};
    static final int BLOCKS_PER_REGION = (int) ((6L << 20) / BS);

    @TempDir
    Path dir;

    /** Every operation after {@link #kill} fails; kill returns once no operation is still running. */
    static final class KillSwitch implements IoBackend {
        final IoBackend inner;
        volatile boolean killed;
        final AtomicInteger running = new AtomicInteger();

        KillSwitch(IoBackend inner) {
            this.inner = inner;
        }

        interface Op<T> {
            T run() throws IOException;
        }

        private <T> T op(Op<T> o) throws IOException {
            running.incrementAndGet();
            try {
                if (killed) throw new IOException("killed");
                return o.run();
            } finally {
                running.decrementAndGet();
            }
        }

        void kill() throws InterruptedException {
            killed = true;
            while (running.get() > 0) Thread.sleep(0, 100_000);
        }

        @Override public void read(long offset, MemorySegment dst) throws IOException { op(() -> { inner.read(offset, dst); return null; }); }
        @Override public void write(long offset, MemorySegment src) throws IOException { op(() -> { inner.write(offset, src); return null; }); }
        @Override public void datasync() throws IOException { op(() -> { inner.datasync(); return null; }); }
        @Override public long size() throws IOException { return op(inner::size); }
        @Override public void truncate(long length) throws IOException { op(() -> { inner.truncate(length); return null; }); }
        @Override public void allocate(long offset, long length) throws IOException { op(() -> { inner.allocate(offset, length); return null; }); }
        @Override public void punchHole(long offset, long length) throws IOException { op(() -> { inner.punchHole(offset, length); return null; }); }
        @Override public void zeroRange(long offset, long length) throws IOException { op(() -> { inner.zeroRange(offset, length); return null; }); }
        @Override public long nextData(long offset) throws IOException { return op(() -> inner.nextData(offset)); }
        @Override public long nextHole(long offset) throws IOException { return op(() -> inner.nextHole(offset)); }
        @Override public boolean readOnly() { return inner.readOnly(); }
        @Override public void close() throws IOException { inner.close(); }
    }

    /**
     * The same guarantee checked at every point a kill can hit: file operations are serialized and,
     * after each one, the file's own L1/L2 tables must map the cluster of every write completed so
     * far (a kill right then would keep nothing else). Concurrent writers into fresh clusters, so that
     * one writes into a cluster another just mapped (the W1 case).
     */
    @Test
    void afterEveryFileOperationTheFileMapsEveryCompletedWrite() throws Exception {
        for (int writers : new int[] {2, 8})
            for (long round = 1; round <= 3; round++) {
                long seed = round;
                Path img = dir.resolve("w" + writers + "-" + seed + ".qcow2");
                Qcow2Image.create(img, CreateOptions.defaults(VSIZE).withClusterSize(CS));
                prefill(img);
                List<Integer> order = new ArrayList<>();
                for (int b = 0; b < REGIONS.length * BLOCKS_PER_REGION; b++) order.add(b);
                Collections.shuffle(order, new Random(seed));
                OnDiskMappings check = new OnDiskMappings(img);
                try (Qcow2Image image = Qcow2Image.open(check.backend(PosixFileBackend.open(img, false)),
                        OpenOptions.defaults().withMetadataWrite(MetadataWrite.WRITETHROUGH), img)) {
                    ConcurrentLinkedQueue<Integer> todo = new ConcurrentLinkedQueue<>(order);
                    List<Thread> threads = new ArrayList<>();
                    List<Throwable> errors = Collections.synchronizedList(new ArrayList<>());
                    for (int w = 0; w < writers; w++) {
                        threads.add(Thread.ofPlatform().start(() -> {
                            try (Arena a = Arena.ofConfined()) {
                                MemorySegment buf = a.allocate(BS, 4096);
                                for (Integer b; (b = todo.poll()) != null; ) {
                                    fill(buf, seed, b);
                                    image.write(blockOffset(b), buf);
                                    check.completed(b);
                                }
                            } catch (Throwable t) {
                                errors.add(t);
                                todo.clear();
                            }
                        }));
                    }
                    for (Thread t : threads) t.join();
                    assertEquals(List.of(), errors, writers + " writers, seed " + seed);
                } finally {
                    check.close();
                }
            }
    }

    /** Reads the file's L1 entry and L2 table for the regions after every change of the file. */
    static final class OnDiskMappings implements java.io.Closeable {
        final java.nio.channels.FileChannel ch;
        final List<Integer> done = new ArrayList<>();

        OnDiskMappings(Path img) throws IOException {
            ch = java.nio.channels.FileChannel.open(img);
        }

        synchronized void completed(int b) {
            done.add(b);
        }

        private synchronized void after(String op) throws IOException {
            java.nio.ByteBuffer h = java.nio.ByteBuffer.allocate(8);
            ch.read(h, 40);
            long l1 = h.getLong(0);
            long gFirst = REGIONS[0] >>> 16, perTable = CS / 8;
            h.clear();
            ch.read(h, l1 + 8 * (gFirst / perTable));
            long l2 = h.getLong(0) & 0x00fffffffffffe00L;
            java.nio.ByteBuffer t = java.nio.ByteBuffer.allocate(CS);
            if (l2 != 0) ch.read(t, l2);
            for (int i = 0; i < done.size(); i++) {
                long g = blockOffset(done.get(i)) >>> 16;
                assertEquals(gFirst / perTable, g / perTable, "the regions share one L2 table");
                long e = l2 == 0 ? 0 : t.getLong((int) (g % perTable) * 8);
                if ((e & 0x00fffffffffffe00L) == 0)
                    throw new AssertionError("after " + op + " the file does not map block " + done.get(i) + ", completed as write #" + i
                            + " of " + done.size() + ": a kill now would lose it");
            }
        }

        IoBackend backend(IoBackend inner) {
            OnDiskMappings m = this;
            return new IoBackend() {
                interface Change { void run() throws IOException; }
                private void change(String op, Change c) throws IOException {
                    synchronized (m) {
                        c.run();
                        m.after(op);
                    }
                }
                @Override public void read(long o, MemorySegment d) throws IOException { inner.read(o, d); }
                @Override public void write(long o, MemorySegment src) throws IOException { change("write " + o + "+" + src.byteSize(), () -> inner.write(o, src)); }
                @Override public void datasync() throws IOException { inner.datasync(); }
                @Override public long size() throws IOException { return inner.size(); }
                @Override public void truncate(long l) throws IOException { change("truncate " + l, () -> inner.truncate(l)); }
                @Override public void allocate(long o, long l) throws IOException { change("allocate " + o + "+" + l, () -> inner.allocate(o, l)); }
                @Override public void punchHole(long o, long l) throws IOException { change("punch " + o + "+" + l, () -> inner.punchHole(o, l)); }
                @Override public void zeroRange(long o, long l) throws IOException { change("zero " + o + "+" + l, () -> inner.zeroRange(o, l)); }
                @Override public boolean readOnly() { return inner.readOnly(); }
                @Override public void close() throws IOException { inner.close(); }
            };
        }

        @Override
        public void close() throws IOException {
            ch.close();
        }
    }

    static long blockOffset(int b) {
        return REGIONS[b / BLOCKS_PER_REGION] + (long) (b % BLOCKS_PER_REGION) * BS;
    }

    static void fill(MemorySegment s, long seed, int b) {
        long x = seed * 0x9E3779B97F4A7C15L + b;
        for (long o = 0; o < s.byteSize(); o += 8) {
            x ^= x << 13; x ^= x >>> 7; x ^= x << 17;
            s.set(ValueLayout.JAVA_LONG_UNALIGNED, o, x == 0 ? 1 : x); // never a zero word: lost data reads as zero
        }
    }

    @Test
    void everyWriteCompletedBeforeTheKillReadsBackAfterTheRecovery() throws Exception {
        long seed = Long.getLong("qblk.killSeed", System.nanoTime());
        int rounds = Integer.getInteger("qblk.killRounds", 20);
        System.out.println("KilledServerTest seed " + seed + " (-Dqblk.killSeed=" + seed + "), " + rounds + " rounds");
        Random r = new Random(seed);
        List<String> failures = new ArrayList<>();
        for (int round = 0; round < rounds; round++) {
            String f = round(r.nextLong(), round, r.nextBoolean());
            if (f != null) failures.add(f);
        }
        assertTrue(failures.isEmpty(), "seed " + seed + ": " + String.join("\n", failures));
    }

    /** One kill; null when every completed write read back, else what was lost. */
    private String round(long seed, int round, boolean setDirtyBit) throws Exception {
        Random r = new Random(seed);
        Path img = dir.resolve("r" + round + ".qcow2"), killed = dir.resolve("k" + round + ".qcow2");
        Qcow2Image.create(img, CreateOptions.defaults(VSIZE).withClusterSize(CS));
        // the XFS of e2e-ublk: earlier data below the regions, so the regions' clusters are not the file's first
        prefill(img);
        List<Integer> order = new ArrayList<>();
        for (int b = 0; b < REGIONS.length * BLOCKS_PER_REGION; b++) order.add(b);
        Collections.shuffle(order, r);
        ConcurrentLinkedQueue<Integer> todo = new ConcurrentLinkedQueue<>(order);
        ConcurrentLinkedQueue<Integer> done = new ConcurrentLinkedQueue<>();
        ConcurrentLinkedQueue<Integer> lateDone = new ConcurrentLinkedQueue<>();
        AtomicLong errors = new AtomicLong();
        int killAfter = 20 + r.nextInt(REGIONS.length * BLOCKS_PER_REGION - 40);

        KillSwitch ks = new KillSwitch(PosixFileBackend.open(img, false));
        Qcow2Image image = Qcow2Image.open(ks, OpenOptions.defaults().withMetadataWrite(MetadataWrite.WRITETHROUGH), img);
        List<Thread> threads = new ArrayList<>();
        for (int w = 0; w < WRITERS; w++) {
            threads.add(Thread.ofPlatform().name("writer-" + w).start(() -> {
                try (Arena a = Arena.ofConfined()) {
                    MemorySegment buf = a.allocate(BS, 4096);
                    for (Integer b; (b = todo.poll()) != null; ) {
                        fill(buf, seed, b);
                        try {
                            image.write(blockOffset(b), buf);
                        } catch (IOException | RuntimeException e) {
                            if (!ks.killed) errors.incrementAndGet();
                            return;
                        }
                        done.add(b); // completed: the guest was told so
                        if (ks.killed) lateDone.add(b);
                    }
                }
            }));
        }
        Thread flusher = Thread.ofPlatform().name("flusher").start(() -> {
            // the mounted XFS's fsyncs: guest flushes among the writes
            while (!ks.killed) {
                try {
                    image.flush();
                    Thread.sleep(1 + (seed & 3));
                } catch (IOException | RuntimeException e) {
                    if (!ks.killed) errors.incrementAndGet();
                    return;
                } catch (InterruptedException e) {
                    return;
                }
            }
        });
        while (done.size() < killAfter && threads.stream().anyMatch(Thread::isAlive)) Thread.sleep(0, 200_000);
        ks.kill();
        // what the kill leaves: the file as every operation that returned made it
        Files.copy(img, killed);
        for (Thread t : threads) t.join(TimeUnit.SECONDS.toMillis(30));
        flusher.join(TimeUnit.SECONDS.toMillis(30));
        for (Thread t : threads) assertFalse(t.isAlive(), "a writer hangs after the kill");
        assertEquals(0, errors.get(), "errors before the kill");
        // every write that returned: those that returned after the kill had all their operations done before it
        List<Integer> completed = new ArrayList<>(done);
        try {
            image.close();
        } catch (IOException | RuntimeException expected) {
            // the dead server's close fails: its file is gone
        }
        Path asKilled = dir.resolve("a" + round + ".qcow2");
        Files.copy(killed, asKilled);
        if (setDirtyBit) setDirtyBit(killed);

        List<String> log = new ArrayList<>();
        List<String> lost = new ArrayList<>();
        try (BlockTarget t = TargetOpener.openForRecovery(killed, TargetOptions.defaults().withFormat(ImageFormat.QCOW2)
                .withMetadata(MetadataWrite.WRITETHROUGH), log::add); Arena a = Arena.ofConfined()) {
            MemorySegment want = a.allocate(BS, 4096), got = a.allocate(BS, 4096);
            for (int b : completed) {
                fill(want, seed, b);
                t.read(blockOffset(b), got);
                if (got.mismatch(want) >= 0) {
                    long word = got.get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
                    lost.add("block " + b + " (completed #" + completed.indexOf(b) + ")" + (lateDone.contains(b) ? " (completed after the kill)" : "") + " at " + blockOffset(b) + (word == 0 ? " reads zeroes" : " reads other data")
                            + "; as killed " + qemuImgMap(asKilled, blockOffset(b)) + "; recovered " + qemuImgMap(killed, blockOffset(b)));
                }
            }
        }
        int exit = qemuImgCheck(killed);
        System.out.println("round " + round + ": killed after " + completed.size() + " completed writes, dirty bit " + setDirtyBit
                + ", " + log + ", lost " + lost.size() + ", qemu-img check " + exit);
        if (!lost.isEmpty() || exit != 0)
            return "round " + round + " (round seed " + seed + ", " + completed.size() + " completed, dirty bit " + setDirtyBit
                    + "): qemu-img check " + exit + ", lost " + lost.size() + ": " + lost.subList(0, Math.min(5, lost.size()));
        Files.delete(img);
        Files.delete(killed);
        Files.delete(asKilled);
        return null;
    }

    private static void prefill(Path img) throws IOException {
        try (Qcow2Image i = Qcow2Image.open(img, OpenOptions.defaults()); Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(1 << 20, 4096);
            s.fill((byte) 0x33);
            for (long o = 0; o < (8L << 20); o += s.byteSize()) i.write(o, s);
        }
    }

    private static void setDirtyBit(Path img) throws IOException {
        try (var ch = java.nio.channels.FileChannel.open(img, java.nio.file.StandardOpenOption.READ, java.nio.file.StandardOpenOption.WRITE)) {
            java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(1);
            ch.read(b, 79);
            b.put(0, (byte) (b.get(0) | 1)).rewind();
            ch.write(b, 79);
        }
    }

    private static String qemuImgMap(Path img, long offset) throws IOException {
        try {
            Process p = new ProcessBuilder("qemu-img", "map", "-U", "-f", "qcow2", "--output=json", "--start-offset=" + offset,
                    "--max-length=" + BS, img.toString()).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            p.waitFor(60, TimeUnit.SECONDS);
            return out.replaceAll("\\s+", " ").trim();
        } catch (InterruptedException e) {
            throw new IOException(e);
        }
    }

    private static int qemuImgCheck(Path img) throws Exception {
        Process p = new ProcessBuilder("qemu-img", "check", "-q", img.toString()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), out);
        if (p.exitValue() != 0) System.out.println(out);
        return p.exitValue();
    }
}
