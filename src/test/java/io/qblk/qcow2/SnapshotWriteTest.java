package io.qblk.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Writes under internal snapshots, with qemu as the oracle: qemu-img makes the snapshots, the engine
 * writes, zeroes and discards (copy-on-write of shared L2 tables and data clusters), then
 * {@code qemu-img check} is clean, the active image reads as the model, and every snapshot, applied
 * with {@code qemu-img snapshot -a}, still equals what it held when it was taken
 * ({@code qemu-img compare} against a raw copy made then).
 */
class SnapshotWriteTest {
    private static final long SIZE = 12L << 20;

    @TempDir
    Path dir;

    static Stream<String> layouts() {
        return Stream.of("compat=1.1,cluster_size=64k", "compat=0.10,cluster_size=64k", "compat=1.1,cluster_size=4k,refcount_bits=16",
                "compat=1.1,cluster_size=512,refcount_bits=64");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("layouts")
    void engineWritesUnderQemuSnapshots(String opts) throws Exception {
        Path img = dir.resolve("s.qcow2");
        TestImages.qemuImg("create", "-q", "-f", "qcow2", "-o", opts, img.toString(), String.valueOf(SIZE)).exit();
        qemuIoOk(img, "write -P 0x11 0 3M");
        qemuIoOk(img, "write -c -P 0x12 4M 256k");
        qemuIoOk(img, "write -P 0x13 9M 2M");
        snapshot(img, "s1");
        qemuIoOk(img, "write -P 0x21 1M 1M");
        snapshot(img, "s2");

        byte[] model = rawOf(img);
        Random rnd = new Random(opts.hashCode());
        try (Qcow2Image q = Qcow2Image.open(img, OpenOptions.defaults())) {
            int cs = q.clusterSize();
            for (int i = 0; i < 60; i++) {
                long off = rnd.nextLong(SIZE - 200_000);
                int len = 1 + rnd.nextInt(i % 3 == 0 ? 3 * cs : 4096);
                switch (i % 5) {
                    case 0, 1, 2 -> {
                        MemorySegment p = TestImages.pattern(len, i);
                        q.write(off, p);
                        System.arraycopy(p.toArray(ValueLayout.JAVA_BYTE), 0, model, (int) off, len);
                    }
                    case 3 -> {
                        q.writeZeroes(off, len, i % 2 == 0);
                        Arrays.fill(model, (int) off, (int) off + len, (byte) 0);
                    }
                    default -> {
                        // discard: whole clusters read as zero (no backing file), partial ones keep their bytes
                        q.discard(off, len);
                        long a = (off + cs - 1) / cs * cs, b = (off + len) / cs * cs;
                        if (a < b) Arrays.fill(model, (int) a, (int) b, (byte) 0);
                    }
                }
                if (i % 17 == 0) q.flush();
            }
            assertArrayEquals(model, TestImages.read(q, 0, SIZE), "engine reads its writes back");
        }
        TestImages.assertQemuClean(img);
        Path activeRaw = dir.resolve("active.raw");
        Files.write(activeRaw, model);
        assertEquals(0, TestImages.qemuImg("compare", "-f", "qcow2", "-F", "raw", img.toString(), activeRaw.toString()).exit(), "active image = model");
        for (String s : new String[] {"s1", "s2"}) {
            Path copy = dir.resolve("apply-" + s + ".qcow2");
            Files.copy(img, copy, StandardCopyOption.REPLACE_EXISTING);
            TestImages.Result r = TestImages.qemuImg("snapshot", "-a", s, copy.toString());
            assertEquals(0, r.exit(), r.out());
            TestImages.Result c = TestImages.qemuImg("compare", "-f", "qcow2", "-F", "raw", copy.toString(), dir.resolve(s + ".raw").toString());
            assertEquals(0, c.exit(), "snapshot " + s + " unchanged: " + c.out());
            TestImages.assertQemuClean(copy);
        }
    }

    /** The case: an active L2 entry flagged COPIED while its cluster has refcount 3 (two snapshots). */
    @Test
    void copiedFlagOnSharedClusterIsACorruptionAndRepairFixesIt() throws Exception {
        Path img = dir.resolve("c.qcow2");
        TestImages.qemuImg("create", "-q", "-f", "qcow2", img.toString(), "4M").exit();
        qemuIoOk(img, "write -P 0x5a 0 64k");
        snapshot(img, "a");
        snapshot(img, "b");
        long l2 = activeL2Offset(img);
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            ByteBuffer e = ByteBuffer.allocate(8).order(ByteOrder.BIG_ENDIAN);
            ch.read(e, l2);
            long v = e.getLong(0);
            assertEquals(0, v & L2Entry.COPIED, "qemu cleared COPIED on the shared entry");
            e.clear();
            e.putLong(0, v | L2Entry.COPIED);
            ch.write(e, l2);
        }
        TestImages.Result qemu = TestImages.qemuImg("check", img.toString());
        assertEquals(2, qemu.exit(), "qemu-img check finds the corruption: " + qemu.out());
        assertTrue(qemu.out().contains("OFLAG_COPIED data cluster"), qemu.out());
        try (Qcow2Image q = Qcow2Image.open(img, OpenOptions.defaults().withReadOnly(true))) {
            CheckReport r = q.check(RepairMode.NONE);
            assertEquals(1, r.corruptions(), r.messages().toString());
            assertTrue(r.messages().get(0).contains("OFLAG_COPIED data cluster"), r.messages().toString());
        }
        try (Qcow2Image q = Qcow2Image.open(img, OpenOptions.defaults())) {
            CheckReport r = q.check(RepairMode.ALL);
            assertEquals(0, r.corruptions(), r.messages().toString());
            assertEquals(1, r.corruptionsFixed(), r.messages().toString());
        }
        TestImages.assertQemuClean(img);
    }

    private long activeL2Offset(Path img) throws Exception {
        try (FileChannel ch = FileChannel.open(img)) {
            ByteBuffer b = ByteBuffer.allocate(8).order(ByteOrder.BIG_ENDIAN);
            ch.read(b, 40);
            long l1 = b.getLong(0);
            b.clear();
            ch.read(b, l1);
            return b.getLong(0) & L2Entry.OFFSET_MASK;
        }
    }

    private void snapshot(Path img, String name) throws Exception {
        TestImages.Result r = TestImages.qemuImg("snapshot", "-c", name, img.toString());
        assertEquals(0, r.exit(), r.out());
        Files.write(dir.resolve(name + ".raw"), rawOf(img));
    }

    private byte[] rawOf(Path img) throws Exception {
        Path raw = dir.resolve("tmp.raw");
        Files.deleteIfExists(raw);
        TestImages.Result r = TestImages.qemuImg("convert", "-f", "qcow2", "-O", "raw", img.toString(), raw.toString());
        assertEquals(0, r.exit(), r.out());
        return Files.readAllBytes(raw);
    }

    private static void qemuIoOk(Path img, String cmd) throws Exception {
        TestImages.Result r = TestImages.qemuIo(img, cmd);
        assertEquals(0, r.exit(), r.out());
        assertTrue(!r.out().contains("error") && !r.out().contains("failed"), r.out());
    }
}
