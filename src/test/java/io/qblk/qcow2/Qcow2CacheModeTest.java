package io.qblk.qcow2;

import static io.qblk.qcow2.TestImages.*;
import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.AioMode;
import io.qblk.io.CacheMode;
import io.qblk.io.DirectIoBackend;
import io.qblk.io.LibC;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The engine on cache mode none (O_DIRECT for aligned requests) and on io_uring: same contents as
 * the default mode, images qemu accepts, and allocating writes that leave the rest of a fresh
 * cluster reading zero without writing it (fallocate zero range), also for a reused cluster.
 */
class Qcow2CacheModeTest {
    @TempDir
    Path dir;

    private boolean directSupported() throws Exception {
        Path probe = dir.resolve("probe");
        Files.write(probe, new byte[0]);
        int fd = LibC.open(probe.toString(), LibC.O_RDWR | LibC.O_CLOEXEC | LibC.O_DIRECT, 0);
        if (fd < 0) {
            System.out.println("Qcow2CacheModeTest: " + dir + " refuses O_DIRECT (errno " + LibC.errno() + "); the fallback is tested");
            return false;
        }
        LibC.close(fd);
        return true;
    }

    @ParameterizedTest(name = "cache {0}, aio {1}, cluster {2}")
    @CsvSource({"NONE, POSIX, 65536", "NONE, IO_URING, 65536", "WRITEBACK, IO_URING, 65536", "NONE, POSIX, 4096",
            "NONE, IO_URING, 2097152", "NONE, POSIX, 512"})
    void concurrentMixedWritesMatchTheModelAndQemu(CacheMode cache, AioMode aio, int cluster) throws Exception {
        boolean direct = directSupported();
        Path p = dir.resolve("t.qcow2");
        long size = 32L << 20;
        Qcow2Image.create(p, CreateOptions.defaults(size).withClusterSize(cluster));
        byte[] model = new byte[(int) size];
        OpenOptions o = OpenOptions.defaults().withCacheMode(cache).withAio(aio);
        try (Qcow2Image img = Qcow2Image.open(p, o)) {
            if (cache == CacheMode.NONE && cluster < 4096) {
                assertNotNull(img.directDisabledReason());
                assertTrue(img.directDisabledReason().contains("cluster size") || !direct, img.directDisabledReason());
            } else if (cache == CacheMode.NONE && direct) {
                assertNull(img.directDisabledReason());
            }
            // 8 writers on disjoint stripes: 4 KiB-aligned writes (direct) and odd ones (buffered), so
            // allocations, rewrites and partial clusters of both kinds interleave.
            int threads = 8;
            long stripe = size / threads;
            AtomicReference<Throwable> failure = new AtomicReference<>();
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                final int id = t;
                ts.add(Thread.ofVirtual().start(() -> {
                    Random r = new Random(id * 7919L + cluster);
                    try (Arena a = Arena.ofConfined()) {
                        for (int i = 0; i < 60; i++) {
                            boolean aligned = r.nextBoolean();
                            int len = aligned ? 4096 * (1 + r.nextInt(20)) : 1 + r.nextInt(9000);
                            long off = id * stripe + r.nextInt((int) (stripe - len));
                            if (aligned) off &= ~4095L;
                            MemorySegment s = a.allocate(len, 4096);
                            for (int k = 0; k < len; k++) s.set(ValueLayout.JAVA_BYTE, k, (byte) (id * 37 + i * 11 + k * 3 + 1));
                            img.write(off, s);
                            MemorySegment.copy(s, ValueLayout.JAVA_BYTE, 0, model, (int) off, len);
                            if (i % 20 == 19) img.flush();
                        }
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                }));
            }
            for (Thread t : ts) t.join();
            if (failure.get() != null) throw new AssertionError("writer failed", failure.get());
            assertArrayEquals(model, read(img, 0, size), "contents through the same handle");
            if (cache == CacheMode.NONE && direct && cluster >= 4096) {
                DirectIoBackend d = (DirectIoBackend) img.file();
                assertTrue(d.directOps() > 0, "no request went direct");
                assertTrue(d.bufferedOps() > 0, "no request went buffered");
            }
        }
        assertQemuClean(p);
        // Reopened in the default mode (page cache): the same bytes.
        try (Qcow2Image again = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true))) {
            assertArrayEquals(model, read(again, 0, size));
            assertTrue(again.check(RepairMode.NONE).clean());
        }
        Path raw = dir.resolve("model.raw");
        Files.write(raw, model);
        Result cmp = qemuImg("compare", "-f", "qcow2", "-F", "raw", p.toString(), raw.toString());
        assertEquals(0, cmp.exit(), cmp.out());
    }

    @ParameterizedTest(name = "cache {0}")
    @CsvSource({"NONE", "WRITEBACK"})
    void smallAllocatingWriteLeavesTheClusterTailZeroWithoutWritingIt(CacheMode cache) throws Exception {
        Path p = dir.resolve("z.qcow2");
        int cs = 65536;
        long size = 16L << 20;
        Qcow2Image.create(p, CreateOptions.defaults(size).withClusterSize(cs));
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withCacheMode(cache))) {
            // Fill guest cluster 0 with a pattern and make it durable, then discard it: its host
            // cluster returns to the free pool after the flush, still holding the old pattern.
            img.write(0, filled(cs, 0x5a));
            img.flush();
            long hostBefore = img.map(0, cs).get(0).offset();
            img.discard(0, cs);
            img.flush();
            img.flush(); // the second flush applies the free (refcount 0): the cluster can be reused
            // A 4 KiB write in the middle of another guest cluster takes a host cluster: the reused
            // one must read zero outside the 4 KiB, not 0x5a.
            long g = 5L * cs;
            img.write(g + 8192, filled(4096, 0x11));
            List<MapEntry> m = img.map(g, cs);
            assertEquals(1, m.size(), m.toString());
            assertEquals(hostBefore, m.get(0).offset(), "the freed cluster was reused: " + m);
            byte[] back = read(img, g, cs);
            for (int i = 0; i < cs; i++) assertEquals(i >= 8192 && i < 8192 + 4096 ? 0x11 : 0, back[i], "byte " + i);
            // A fresh cluster at the end of the file: the file covers the whole cluster afterwards.
            img.write(9L * cs + 512, filled(512, 0x22));
            long host = img.map(9L * cs, cs).get(0).offset();
            img.flush();
            assertTrue(Files.size(p) >= host + cs, "file ends at " + Files.size(p) + ", cluster at " + host);
            byte[] back2 = read(img, 9L * cs, cs);
            for (int i = 0; i < cs; i++) assertEquals(i >= 512 && i < 1024 ? 0x22 : 0, back2[i], "byte " + i);
        }
        assertQemuClean(p);
        Result r = qemuIo(p, "read -P 0 " + (5L * cs) + " 8192");
        assertTrue(r.out().contains("read 8192/8192"), r.out());
        r = qemuIo(p, "read -P 0x11 " + (5L * cs + 8192) + " 4096");
        assertTrue(r.out().contains("read 4096/4096") && !r.out().contains("Pattern verification failed"), r.out());
        r = qemuIo(p, "read -P 0 " + (5L * cs + 12288) + " " + (cs - 12288));
        assertTrue(!r.out().contains("Pattern verification failed"), r.out());
    }

    @Test
    void preallocatedImageReadsZeroAndTakesWritesInCacheModeNone() throws Exception {
        Path p = dir.resolve("f.qcow2");
        Result c = qemuImg("create", "-q", "-f", "qcow2", "-o", "preallocation=falloc", p.toString(), "8M");
        assertEquals(0, c.exit(), c.out());
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults().withCacheMode(CacheMode.NONE).withAio(AioMode.IO_URING))) {
            byte[] z = read(img, 0, 8L << 20);
            for (byte b : z) assertEquals(0, b);
            MemorySegment s = pattern(1 << 20, 9);
            img.write(3L << 20, s);
            img.write(512, filled(1000, 0x33)); // unaligned, buffered, into a preallocated cluster
            img.flush();
            assertArrayEquals(s.toArray(ValueLayout.JAVA_BYTE), read(img, 3L << 20, 1 << 20));
        }
        assertQemuClean(p);
        Result r = qemuIo(p, "read -P 0x33 512 1000");
        assertTrue(!r.out().contains("Pattern verification failed") && r.out().contains("read 1000/1000"), r.out());
    }
}
