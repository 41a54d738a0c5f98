package io.qblk.qcow2;

import static io.qblk.qcow2.TestImages.*;
import static org.junit.jupiter.api.Assertions.*;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class Qcow2RoundTripTest {
    @TempDir
    Path dir;

    @ParameterizedTest(name = "v{0} cluster {1} refcount {2}")
    @CsvSource({
        "3, 512, 1", "3, 1024, 2", "3, 4096, 4", "3, 8192, 8", "3, 65536, 16", "3, 16384, 32", "3, 2097152, 64",
        "2, 512, 16", "2, 65536, 16", "3, 65536, 64", "3, 512, 64", "2, 2097152, 16"})
    void writeReadAcrossLayouts(int version, int cluster, int refbits) throws Exception {
        Path p = dir.resolve("t.qcow2");
        long size = 64L << 20;
        Qcow2Image.create(p, CreateOptions.defaults(size).withVersion(version).withClusterSize(cluster).withRefcountBits(refbits));
        assertQemuClean(p);
        Random r = new Random(cluster * 31L + refbits);
        long[] offs = new long[40];
        int[] lens = new int[40];
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults())) {
            assertEquals(size, img.virtualSize());
            assertEquals(cluster, img.clusterSize());
            for (int i = 0; i < offs.length; i++) {
                lens[i] = 1 + r.nextInt(3 * cluster + 5000);
                offs[i] = (long) r.nextInt((int) (size - lens[i]));
                if (i % 3 == 0) offs[i] &= ~511L;
            }
            // expected contents tracked in a plain array over the touched area
            byte[] model = new byte[(int) size];
            for (int i = 0; i < offs.length; i++) {
                MemorySegment s = pattern(lens[i], i);
                img.write(offs[i], s);
                MemorySegment.copy(s, ValueLayout.JAVA_BYTE, 0, model, (int) offs[i], lens[i]);
            }
            for (int i = 0; i < offs.length; i++) {
                byte[] back = read(img, offs[i], lens[i]);
                byte[] want = java.util.Arrays.copyOfRange(model, (int) offs[i], (int) offs[i] + lens[i]);
                assertArrayEquals(want, back, "range " + i);
            }
            img.flush();
            img.close();
            assertQemuClean(p);
            try (Qcow2Image again = Qcow2Image.open(p, OpenOptions.defaults().withReadOnly(true))) {
                byte[] all = read(again, 0, size);
                assertArrayEquals(model, all);
                assertTrue(again.check(RepairMode.NONE).clean());
            }
        }
    }

    @Test
    void qemuReadsOurDataAndWeReadQemus() throws Exception {
        Path p = dir.resolve("x.qcow2");
        Qcow2Image.create(p, CreateOptions.defaults(16L << 20));
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults())) {
            img.write(1 << 20, filled(70000, 0xab));
        }
        assertEquals(0, qemuIo(p, "read -P 0xab 1048576 70000").exit());
        assertTrue(qemuIo(p, "read -P 0xac 1048576 70000").out().contains("Pattern verification failed"), "qemu-io must notice a wrong pattern");
        assertEquals(0, qemuIo(p, "write -P 0x5c 3145728 131072").exit());
        try (Qcow2Image img = Qcow2Image.open(p, OpenOptions.defaults())) {
            byte[] b = read(img, 3145728, 131072);
            for (byte x : b) assertEquals((byte) 0x5c, x);
            byte[] a = read(img, 1 << 20, 70000);
            for (byte x : a) assertEquals((byte) 0xab, x);
            assertEquals(0, read(img, (1 << 20) + 70000, 1)[0]);
        }
        assertQemuClean(p);
    }

    @ParameterizedTest(name = "compat {0}, {1} bytes, cluster {2}")
    @CsvSource({"1.1, 1073741824, 65536", "0.10, 1073741824, 65536", "1.1, 5000000, 2097152", "1.1, 0, 65536"})
    void createIsByteIdenticalToQemuImg(String compat, long size, int cluster) throws Exception {
        Path ours = dir.resolve("ours.qcow2"), theirs = dir.resolve("theirs.qcow2");
        Qcow2Image.create(ours, CreateOptions.defaults(size).withCompat(compat).withClusterSize(cluster));
        assertEquals(0, qemuImg("create", "-f", "qcow2", "-o", "compat=" + compat + ",cluster_size=" + cluster, theirs.toString(), Long.toString(size)).exit());
        assertArrayEquals(java.nio.file.Files.readAllBytes(theirs), java.nio.file.Files.readAllBytes(ours));
    }
}
