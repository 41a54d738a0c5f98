package io.qblk.qcow2;

import static io.qblk.qcow2.TestImages.*;
import static org.junit.jupiter.api.Assertions.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What survives the serving process dying (kill -9, machine still up) in each {@link MetadataWrite}
 * mode. "Dying" is a copy of the image file taken while the image is still open and never flushed:
 * that is exactly what the file (page cache included) holds when the process vanishes.
 */
class Qcow2MetadataWriteTest {
    @TempDir
    Path dir;

    private static final long SIZE = 16L << 20;
    private static final int THREADS = 16, OPS = 40;

    /**
     * Concurrent allocating writes, rewrites, zeroes and discards on disjoint stripes; returns what
     * the live image reads afterwards, checked against a model (bytes a discard left undefined excepted).
     */
    private static byte[] writeConcurrently(Qcow2Image img) throws Exception {
        byte[] model = new byte[(int) SIZE];
        boolean[] undefined = new boolean[(int) SIZE];
        long stripe = SIZE / THREADS;
        AtomicReference<Throwable> failure = new AtomicReference<>();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < THREADS; t++) {
            final int id = t;
            ts.add(Thread.ofVirtual().start(() -> {
                Random r = new Random(id * 104729L + 17);
                try (Arena a = Arena.ofConfined()) {
                    for (int i = 0; i < OPS; i++) {
                        int kind = r.nextInt(10);
                        int len = 1 + r.nextInt(70000);
                        long off = id * stripe + r.nextInt((int) (stripe - len));
                        if (kind < 8) {
                            MemorySegment s = a.allocate(len);
                            for (int k = 0; k < len; k++) s.set(ValueLayout.JAVA_BYTE, k, (byte) (id * 41 + i * 13 + k * 5 + 1));
                            img.write(off, s);
                            synchronized (model) {
                                MemorySegment.copy(s, ValueLayout.JAVA_BYTE, 0, model, (int) off, len);
                                Arrays.fill(undefined, (int) off, (int) off + len, false);
                            }
                        } else {
                            if (kind == 8) img.writeZeroes(off, len, r.nextBoolean());
                            else img.discard(off, len);
                            synchronized (model) {
                                Arrays.fill(model, (int) off, (int) off + len, (byte) 0);
                                // a discard may leave partial clusters as they were: those bytes are whatever the live image reads
                                if (kind == 9) Arrays.fill(undefined, (int) off, (int) off + len, true);
                            }
                        }
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }));
        }
        for (Thread t : ts) t.join();
        if (failure.get() != null) throw new AssertionError("writer failed", failure.get());
        byte[] live = read(img, 0, SIZE);
        for (int i = 0; i < SIZE; i++) if (!undefined[i] && live[i] != model[i]) fail("live image differs from the model at " + i);
        return live;
    }

    /** The image as the file holds it right now, opened from a copy (the "process" that wrote it is not told). */
    private byte[] contentsAfterDeath(Path image, Path copy) throws Exception {
        Files.copy(image, copy);
        try (Qcow2Image img = Qcow2Image.open(copy, OpenOptions.defaults().withReadOnly(true))) {
            return read(img, 0, SIZE);
        }
    }

    @Test
    void writethroughKeepsEveryCompletedRequestWhenTheProcessDies() throws Exception {
        Path p = dir.resolve("wt.qcow2");
        Qcow2Image.create(p, CreateOptions.defaults(SIZE).withClusterSize(4096));
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withMetadataWrite(MetadataWrite.WRITETHROUGH))) {
            byte[] model = writeConcurrently(img);
            long flushes = img.stats().flushes();
            Path copy = dir.resolve("wt-died.qcow2");
            byte[] after = contentsAfterDeath(p, copy);
            // No corruption; leaks are allowed (clusters a discard freed are only counted down after the
            // flush that drops their reference, and nothing flushes that decrement here).
            assertNoCorruption(copy);
            assertArrayEquals(model, after, "a completed request was lost with the process");
            // Group commit: allocating requests share flushes (16 writers), and there was at least one.
            assertTrue(flushes > 0, "no flush ran");
            System.out.println("writethrough: " + THREADS * OPS + " requests, " + flushes + " flushes, "
                    + img.stats().datasyncs() + " datasyncs");
        }
        assertQemuClean(p);
    }

    @Test
    void writebackLosesUnflushedAllocationsWhenTheProcessDiesButStaysConsistent() throws Exception {
        // The negative control: the same workload without write-through leaves the file without the
        // mappings (so the test above can fail), yet what the file holds is a clean image.
        Path p = dir.resolve("wb.qcow2");
        Qcow2Image.create(p, CreateOptions.defaults(SIZE).withClusterSize(4096));
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withMetadataWrite(MetadataWrite.WRITEBACK))) {
            byte[] model = writeConcurrently(img);
            assertEquals(0, img.stats().flushes(), "write-back flushed without being asked (cache budget too small for the test?)");
            Path copy = dir.resolve("wb-died.qcow2");
            byte[] after = contentsAfterDeath(p, copy);
            assertNoCorruption(copy);
            assertFalse(Arrays.equals(model, after), "write-back kept every allocation without a flush");
            img.flush();
            Path copy2 = dir.resolve("wb-flushed.qcow2");
            assertArrayEquals(model, contentsAfterDeath(p, copy2), "a flushed write was lost");
            assertNoCorruption(copy2);
        }
    }

    private static void assertNoCorruption(Path image) throws Exception {
        Result r = qemuImg("check", "-f", "qcow2", image.toString());
        assertTrue(r.exit() == 0 || r.exit() == 3, "qemu-img check: only leaks are allowed, exit " + r.exit() + ":\n" + r.out());
    }

    @Test
    void parsesAndPrintsModes() {
        assertEquals(MetadataWrite.WRITETHROUGH, MetadataWrite.parse(" WriteThrough "));
        assertEquals("writeback", MetadataWrite.WRITEBACK.toString());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> MetadataWrite.parse("always"));
        assertTrue(e.getMessage().contains("writeback or writethrough"), e.getMessage());
    }
}
