package io.qblk.qcow2;

import static io.qblk.qcow2.TestImages.*;
import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.Errno;
import io.qblk.testing.FaultyBackend;
import io.qblk.testing.MemoryBackend;
import io.qblk.testing.PowerCut;
import io.qblk.testing.RecordingBackend;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Power loss at every step of a workload: the image left behind (durable writes plus any subset of
 * unsynced ones) must have no corruption (leaks allowed) and must hold every write completed before
 * the last successful flush. Also: injected write/datasync failures propagate and leave a usable image.
 */
class Qcow2CrashTest {
    @TempDir
    Path dir;

    /**
     * A freshly created image in memory (taken as durable), then every call through a fault
     * injector and a recorder whose events keep a power-cut view up to date.
     */
    record Disk(FaultyBackend faults, RecordingBackend file, PowerCut cut) {
        static Disk created(CreateOptions o) throws IOException {
            MemoryBackend mem = new MemoryBackend();
            Qcow2Image.create(mem, o);
            PowerCut cut = new PowerCut(mem.snapshot());
            FaultyBackend faults = new FaultyBackend(mem);
            return new Disk(faults, new RecordingBackend(faults, cut::add), cut);
        }
    }

    @ParameterizedTest(name = "v{0} cluster {1} refcount {2}")
    @CsvSource({"3, 512, 16", "3, 4096, 1", "2, 1024, 16", "3, 65536, 64"})
    void crashAnywhereLeavesNoCorruption(int version, int cluster, int refbits) throws Exception {
        long size = 4L << 20;
        Disk be = Disk.created(CreateOptions.defaults(size).withVersion(version).withClusterSize(cluster).withRefcountBits(refbits));
        Random r = new Random(cluster + version * 7L + refbits);
        byte[] flushedModel = new byte[(int) size];
        byte[] model = new byte[(int) size];
        int crashes = 0;
        java.util.List<byte[]> since = new java.util.ArrayList<>(); // states written since the last flush
        try (Qcow2Image img = Qcow2Image.open(be.file(), OpenOptions.defaults().withCacheBytes(8L * cluster))) {
            for (int step = 0; step < 45; step++) {
                int op = r.nextInt(10);
                long off = r.nextInt((int) size - 70000);
                int len = 1 + r.nextInt(3 * cluster + 1000);
                if (op < 6) {
                    var s = pattern(len, step);
                    img.write(off, s);
                    System.arraycopy(s.toArray(ValueLayout.JAVA_BYTE), 0, model, (int) off, len);
                } else if (op < 7) {
                    img.writeZeroes(off, len, r.nextBoolean());
                    Arrays.fill(model, (int) off, (int) off + len, (byte) 0);
                } else if (op < 8) {
                    // discard leaves contents unspecified: only whole clusters, and model them as zero (no backing)
                    long a = (off + cluster - 1) / cluster * cluster, b = (off + len) / cluster * cluster;
                    if (b > a) {
                        img.discard(a, b - a);
                        Arrays.fill(model, (int) a, (int) b, (byte) 0);
                    }
                } else {
                    img.flush();
                    System.arraycopy(model, 0, flushedModel, 0, model.length);
                    since.clear();
                }
                since.add(model.clone());
                for (int k = 0; k < 2; k++) {
                    verifyCrashImage(be.cut().crashImage(r), flushedModel, since, step + "/" + k);
                    crashes++;
                }
            }
        }
        assertTrue(crashes >= 90);
    }

    private void verifyCrashImage(byte[] file, byte[] flushed, java.util.List<byte[]> since, String where) throws Exception {
        byte[] current = since.getLast();
        Path p = dir.resolve("crash.qcow2");
        Files.write(p, file);
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true))) {
            CheckReport rep = img.check(RepairMode.NONE);
            assertEquals(0, rep.corruptions(), where + ": " + rep.messages());
            byte[] data = read(img, 0, img.virtualSize());
            // every byte reads as its flushed value or as a value written after that flush
            for (int i = 0; i < data.length; i++) {
                if (data[i] != flushed[i] && data[i] != current[i]) {
                    final int at = i;
                    if (since.stream().anyMatch(m -> m[at] == data[at])) continue;
                    fail(where + ": byte " + i + " is " + data[i] + ", flushed " + flushed[i] + ", latest " + current[i]);
                }
            }
        } finally {
            Files.delete(p);
        }
    }

    @Test
    void injectedWriteFailuresPropagateAndLeaveAConsistentImage() throws Exception {
        for (int failAt = 1; failAt < 40; failAt += 3) {
            Disk be = Disk.created(CreateOptions.defaults(2L << 20).withClusterSize(4096));
            be.faults().failNth(Set.of(FaultyBackend.Op.WRITE), failAt, Errno.EIO);
            boolean failed = false;
            byte[] model = new byte[2 << 20];
            Qcow2Image img = Qcow2Image.open(be.file(), OpenOptions.defaults());
            try {
                for (int i = 0; i < 30; i++) {
                    long off = (i * 37L * 4096 + i * 100) % ((2 << 20) - 9000);
                    var s = pattern(9000, i);
                    try {
                        img.write(off, s);
                        System.arraycopy(s.toArray(ValueLayout.JAVA_BYTE), 0, model, (int) off, 9000);
                        if (i % 5 == 4) img.flush();
                    } catch (IOException e) {
                        assertTrue(e.getMessage().contains("injected"), e.getMessage());
                        failed = true;
                        // the same write works once the device recovers
                        img.write(off, s);
                        System.arraycopy(s.toArray(ValueLayout.JAVA_BYTE), 0, model, (int) off, 9000);
                    }
                }
                img.flush();
                assertArrayEquals(model, read(img, 0, 2 << 20));
            } finally {
                img.close();
            }
            assertTrue(failed, "failure " + failAt + " was injected");
            Path p = dir.resolve("f.qcow2");
            Files.write(p, be.cut().crashImage(new Random(failAt)));
            try (Qcow2Image again = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true))) {
                CheckReport rep = again.check(RepairMode.NONE);
                assertEquals(0, rep.corruptions(), rep.messages().toString());
                assertArrayEquals(model, read(again, 0, 2 << 20));
            }
            Files.delete(p);
        }
    }

    @Test
    void failedDatasyncPoisonsTheImage() throws Exception {
        Disk be = Disk.created(CreateOptions.defaults(1L << 20));
        be.faults().failNth(Set.of(FaultyBackend.Op.DATASYNC), 1, Errno.EIO);
        Qcow2Image img = Qcow2Image.open(be.file(), OpenOptions.defaults());
        img.write(0, filled(4096, 1));
        assertThrows(IOException.class, img::flush);
        IOException e = assertThrows(IOException.class, () -> img.write(8192, filled(512, 2)));
        assertTrue(e.getMessage().contains("reopen"), e.getMessage());
        img.close();
    }

    @Test
    void crashDuringConcurrentWritesDiscardsAndFlushes() throws Exception {
        long size = 2L << 20;
        Disk be = Disk.created(CreateOptions.defaults(size).withClusterSize(1024).withRefcountBits(8));
        java.util.concurrent.atomic.AtomicBoolean stop = new java.util.concurrent.atomic.AtomicBoolean();
        java.util.concurrent.ConcurrentLinkedQueue<Throwable> errors = new java.util.concurrent.ConcurrentLinkedQueue<>();
        Random r = new Random(42);
        int checked = 0;
        try (Qcow2Image img = Qcow2Image.open(be.file(), OpenOptions.defaults().withCacheBytes(64 * 1024));
                var ex = java.util.concurrent.Executors.newVirtualThreadPerTaskExecutor()) {
            for (int t = 0; t < 16; t++) {
                final int id = t;
                ex.submit(() -> {
                    Random tr = new Random(id);
                    try {
                        while (!stop.get()) {
                            long off = tr.nextInt((int) size - 9000);
                            switch (tr.nextInt(8)) {
                                case 0 -> img.discard(off, 8192);
                                case 1 -> img.writeZeroes(off, 5000, tr.nextBoolean());
                                case 2 -> img.flush();
                                default -> img.write(off, filled(1 + tr.nextInt(8000), id));
                            }
                        }
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                    return null;
                });
            }
            for (int k = 0; k < 60; k++) {
                Thread.sleep(2);
                byte[] crash = be.cut().crashImage(r);
                Path p = dir.resolve("cc.qcow2");
                Files.write(p, crash);
                try (Qcow2Image c = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true))) {
                    CheckReport rep = c.check(RepairMode.NONE);
                    assertEquals(0, rep.corruptions(), "crash image " + k + ": " + rep.messages());
                }
                Files.delete(p);
                checked++;
            }
            stop.set(true);
        }
        assertTrue(errors.isEmpty(), () -> errors.peek().toString());
        assertEquals(60, checked);
    }
}
