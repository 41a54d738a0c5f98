package io.qblk.uring;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.OpenOptions;
import io.qblk.qcow2.Qcow2Image;
import io.qblk.qcow2.RepairMode;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The qcow2 engine on the io_uring backend, as a ublk queue will run it: data and metadata I/O of
 * many concurrent virtual threads through one ring owner; the result is a clean image that the POSIX
 * path and qemu-img read back identically.
 */
@Timeout(60)
class Qcow2OverUringTest {
    @TempDir
    Path dir;

    @Test
    void concurrentWritesThroughTheRingGiveACleanImage() throws Exception {
        Path p = dir.resolve("u.qcow2");
        long size = 64L << 20;
        int writers = 64, chunk = 12 * 1024;
        try (RingThread ring = RingThread.start("qcow2-ring", RingOptions.forUblk(32));
             UringFileBackend file = UringFileBackend.open(ring, p, false, true)) {
            Qcow2Image.create(file, CreateOptions.defaults(size).withClusterSize(4096));
            try (Qcow2Image img = Qcow2Image.open(file, OpenOptions.defaults())) {
                try (ExecutorService vts = Executors.newVirtualThreadPerTaskExecutor()) {
                    List<Future<?>> fs = new ArrayList<>();
                    for (int w = 0; w < writers; w++) {
                        final int id = w;
                        fs.add(vts.submit(() -> {
                            try (Arena a = Arena.ofConfined()) {
                                MemorySegment buf = a.allocate(chunk, 4096);
                                fill(buf, id);
                                img.write(offsetOf(id, size, writers), buf);
                                MemorySegment back = a.allocate(chunk, 4096);
                                img.read(offsetOf(id, size, writers), back);
                                assertEquals(-1, buf.mismatch(back), "writer " + id);
                            }
                            return null;
                        }));
                    }
                    for (Future<?> f : fs) f.get(30, TimeUnit.SECONDS);
                }
                img.flush();
                assertTrue(img.check(RepairMode.NONE).clean());
            }
            assertTrue(ring.submittedSqes() > writers, "the engine's I/O went through the ring");
        }
        // Read back through the POSIX path.
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true)); Arena a = Arena.ofConfined()) {
            MemorySegment want = a.allocate(chunk, 4096), got = a.allocate(chunk, 4096);
            for (int id = 0; id < writers; id++) {
                fill(want, id);
                img.read(offsetOf(id, size, writers), got);
                assertEquals(-1, want.mismatch(got), "writer " + id + " after reopen");
            }
        }
        Process check = new ProcessBuilder("qemu-img", "check", "-f", "qcow2", p.toString()).redirectErrorStream(true).start();
        String out = new String(check.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(check.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, check.exitValue(), out);
    }

    private static long offsetOf(int id, long size, int writers) {
        return (size / writers) * id + 1536L * (id % 5); // unaligned starts spanning clusters
    }

    private static void fill(MemorySegment buf, int id) {
        SplittableRandom r = new SplittableRandom(id * 7919L);
        for (int i = 0; i < buf.byteSize(); i += 8) buf.set(ValueLayout.JAVA_LONG, i, r.nextLong());
    }
}
