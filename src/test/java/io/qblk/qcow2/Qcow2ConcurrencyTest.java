package io.qblk.qcow2;

import static io.qblk.qcow2.TestImages.*;
import static org.junit.jupiter.api.Assertions.*;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Many virtual threads on one image: same-cluster allocation races, different clusters, flush and discard mixed in. */
class Qcow2ConcurrencyTest {
    @TempDir
    Path dir;

    /** With extended L2 entries the 512-byte slots of one cluster share subclusters: allocations of one subcluster and of neighbours race. */
    @ParameterizedTest(name = "cluster {0}, cache {1}, extended L2 {2}")
    @CsvSource({"65536, 33554432, false", "512, 32768, false", "4096, 16384, false", "65536, 33554432, true", "16384, 65536, true"})
    void concurrentWritersSameAndDifferentClusters(int cluster, long cache, boolean extendedL2) throws Exception {
        Path p = dir.resolve("c.qcow2");
        long size = 32L << 20;
        Qcow2Image.create(p, CreateOptions.defaults(size).withClusterSize(cluster).withExtendedL2(extendedL2));
        int slot = 512;
        int slotsPerCluster = Math.min(cluster / slot, 16);
        int sharedClusters = 8;
        // region 1: threads race on the same unallocated clusters, each owning a 512-byte slot
        // region 2 (from 8 MiB): each thread owns whole 4 KiB blocks spread over many clusters and L2 tables
        long region2 = 8L << 20;
        int threads = 96;
        ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withCacheBytes(cache));
                ExecutorService ex = Executors.newVirtualThreadPerTaskExecutor()) {
            CountDownLatch start = new CountDownLatch(1);
            List<Future<?>> fs = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                final int id = t;
                fs.add(ex.submit(() -> {
                    try {
                        start.await();
                        for (int c = 0; c < sharedClusters; c++) {
                            int s = id % slotsPerCluster;
                            if (id / slotsPerCluster != c % Math.max(1, threads / slotsPerCluster)) continue;
                            img.write((long) c * cluster + (long) s * slot, filled(slot, 1 + c * 16 + s));
                        }
                        for (int k = 0; k < 20; k++) {
                            long off = region2 + ((long) (k * threads + id) * 4096 * 3) % (size - region2 - 4096);
                            off &= ~4095L;
                            img.write(off, pattern(4096, id * 1000 + k));
                            byte[] back = read(img, off, 4096);
                            assertArrayEquals(pattern(4096, id * 1000 + k).toArray(ValueLayout.JAVA_BYTE), back);
                            if (k % 7 == id % 7) img.flush();
                        }
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                    return null;
                }));
            }
            start.countDown();
            for (Future<?> f : fs) f.get();
            assertTrue(errors.isEmpty(), () -> errors.peek().toString());
            // verify region 1: every slot written by exactly the thread that owned it
            for (int c = 0; c < sharedClusters; c++) {
                byte[] b = read(img, (long) c * cluster, cluster);
                for (int s = 0; s < slotsPerCluster; s++) {
                    boolean written = false;
                    for (int id = 0; id < threads; id++)
                        if (id % slotsPerCluster == s && id / slotsPerCluster == c % Math.max(1, threads / slotsPerCluster)) written = true;
                    byte want = written ? (byte) (1 + c * 16 + s) : 0;
                    for (int i = 0; i < slot; i++) assertEquals(want, b[s * slot + i], "cluster " + c + " slot " + s);
                }
            }
            for (int id = 0; id < threads; id++) {
                for (int k = 0; k < 20; k++) {
                    long off = (region2 + ((long) (k * threads + id) * 4096 * 3) % (size - region2 - 4096)) & ~4095L;
                    assertArrayEquals(pattern(4096, id * 1000 + k).toArray(ValueLayout.JAVA_BYTE), read(img, off, 4096), "block " + id + "/" + k);
                }
            }
        }
        assertQemuClean(p);
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true))) {
            CheckReport r = img.check(RepairMode.NONE);
            assertTrue(r.clean(), r.messages().toString());
        }
    }

    @ParameterizedTest(name = "cluster {0}")
    @CsvSource({"65536", "1024"})
    void concurrentDiscardWriteAndRead(int cluster) throws Exception {
        Path p = dir.resolve("d.qcow2");
        long size = 16L << 20;
        Qcow2Image.create(p, CreateOptions.defaults(size).withClusterSize(cluster));
        int threads = 32;
        long per = size / threads;
        ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults());
                ExecutorService ex = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<?>> fs = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                final long base = t * per;
                final int id = t;
                fs.add(ex.submit(() -> {
                    try {
                        MemorySegment data = pattern(per, id);
                        for (int round = 0; round < 3; round++) {
                            img.write(base, data);
                            img.discard(base, per / 2);
                            if (round % 2 == 0) img.flush();
                        }
                        img.write(base, data.asSlice(0, per / 4));
                        byte[] b = read(img, base, per);
                        byte[] want = data.toArray(ValueLayout.JAVA_BYTE);
                        for (long i = per / 4; i < per / 2; i++) want[(int) i] = 0;
                        assertArrayEquals(want, b);
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                    return null;
                }));
            }
            for (Future<?> f : fs) f.get();
            assertTrue(errors.isEmpty(), () -> errors.peek().toString());
        }
        assertQemuClean(p);
    }
}
