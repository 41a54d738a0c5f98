package io.qblk.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Snapshot create / apply / delete in the engine, with qemu as the oracle in both directions: what
 * the engine creates qemu-img lists, applies and checks clean; what qemu-img creates the engine
 * applies and deletes, and qemu-img then checks clean and compares equal.
 */
class SnapshotOpsTest {
    private static final long SIZE = 6L << 20;

    @TempDir
    Path dir;

    static Stream<String> layouts() {
        return Stream.of("compat=1.1,cluster_size=64k", "compat=0.10,cluster_size=64k", "compat=1.1,cluster_size=512,refcount_bits=8",
                "compat=1.1,cluster_size=4k");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("layouts")
    void engineSnapshotsAreQemuSnapshots(String opts) throws Exception {
        Path img = dir.resolve("e.qcow2");
        assertEquals(0, TestImages.qemuImg("create", "-q", "-f", "qcow2", "-o", opts, img.toString(), String.valueOf(SIZE)).exit());
        byte[] v1, v2, v3;
        try (Qcow2Image q = Qcow2Image.open(img, OpenOptions.defaults())) {
            q.write(0, TestImages.pattern(1 << 20, 1));
            q.write(3 << 20, TestImages.pattern(300_000, 2));
            v1 = TestImages.read(q, 0, SIZE);
            SnapshotInfo a = q.createSnapshot("one");
            assertEquals("1", a.id());
            q.write(4096, TestImages.pattern(70_000, 3));
            q.writeZeroes(3 << 20, 65536, false);
            q.discard(512 << 10, 256 << 10);
            v2 = TestImages.read(q, 0, SIZE);
            assertEquals("2", q.createSnapshot("two").id());
            q.write(5 << 20, TestImages.pattern(100_000, 4));
            q.write(0, TestImages.pattern(8192, 5));
            v3 = TestImages.read(q, 0, SIZE);
            assertArrayEquals(v1, readSnap(q, "one"));
            assertArrayEquals(v2, readSnap(q, "2"));
        }
        TestImages.assertQemuClean(img);
        String list = TestImages.qemuImg("snapshot", "-l", img.toString()).out();
        assertTrue(list.contains("one") && list.contains("two"), list);
        assertEquals(0, TestImages.qemuImg("compare", "-f", "qcow2", "-F", "raw", img.toString(), raw("v3", v3).toString()).exit());
        for (String[] s : new String[][] {{"one", "v1"}, {"two", "v2"}}) {
            Path copy = dir.resolve("q-" + s[0] + ".qcow2");
            Files.copy(img, copy, StandardCopyOption.REPLACE_EXISTING);
            assertEquals(0, TestImages.qemuImg("snapshot", "-a", s[0], copy.toString()).exit());
            byte[] want = s[1].equals("v1") ? v1 : v2;
            TestImages.Result c = TestImages.qemuImg("compare", "-f", "qcow2", "-F", "raw", copy.toString(), raw(s[1], want).toString());
            assertEquals(0, c.exit(), "qemu applied our snapshot " + s[0] + ": " + c.out());
        }
        // engine applies and deletes; qemu checks
        try (Qcow2Image q = Qcow2Image.open(img, OpenOptions.defaults())) {
            q.applySnapshot("one");
            assertArrayEquals(v1, TestImages.read(q, 0, SIZE));
            q.write(2 << 20, TestImages.pattern(65536 * 2, 6));
            System.arraycopy(TestImages.pattern(65536 * 2, 6).toArray(ValueLayout.JAVA_BYTE), 0, v1, 2 << 20, 65536 * 2);
            q.deleteSnapshot("one");
            assertEquals(1, q.snapshots().size());
            assertArrayEquals(v2, readSnap(q, "two"));
        }
        TestImages.assertQemuClean(img);
        assertEquals(0, TestImages.qemuImg("compare", "-f", "qcow2", "-F", "raw", img.toString(), raw("v1b", v1).toString()).exit());
        try (Qcow2Image q = Qcow2Image.open(img, OpenOptions.defaults())) {
            q.deleteSnapshot("two");
            assertEquals(0, q.snapshots().size());
            assertEquals(0, q.check(RepairMode.NONE).corruptions());
        }
        TestImages.assertQemuClean(img);
        assertEquals(0, TestImages.qemuImg("compare", "-f", "qcow2", "-F", "raw", img.toString(), raw("v1c", v1).toString()).exit());
    }

    @Test
    void qemuSnapshotsAppliedAndDeletedByEngine() throws Exception {
        Path img = dir.resolve("q.qcow2");
        TestImages.qemuImg("create", "-q", "-f", "qcow2", img.toString(), String.valueOf(SIZE));
        TestImages.qemuIo(img, "write -P 0x41 0 2M");
        TestImages.qemuImg("snapshot", "-c", "base", img.toString());
        Path baseRaw = dir.resolve("base.raw");
        TestImages.qemuImg("convert", "-O", "raw", img.toString(), baseRaw.toString());
        TestImages.qemuIo(img, "write -P 0x42 1M 2M");
        TestImages.qemuImg("snapshot", "-c", "later", img.toString());
        try (Qcow2Image q = Qcow2Image.open(img, OpenOptions.defaults())) {
            assertEquals(2, q.snapshots().size());
            assertEquals("base", q.snapshots().get(0).name());
            q.deleteSnapshot("later");
            q.applySnapshot("base");
            assertThrows(Qcow2Exception.class, () -> q.applySnapshot("nosuch"));
        }
        TestImages.assertQemuClean(img);
        assertEquals(0, TestImages.qemuImg("compare", "-f", "qcow2", "-F", "raw", img.toString(), baseRaw.toString()).exit());
        String list = TestImages.qemuImg("snapshot", "-l", img.toString()).out();
        assertTrue(list.contains("base") && !list.contains("later"), list);
    }

    private Path raw(String name, byte[] b) throws Exception {
        Path p = dir.resolve(name + ".raw");
        Files.write(p, b);
        return p;
    }

    private static byte[] readSnap(Qcow2Image q, String key) throws Exception {
        MemorySegment s = Arena.ofAuto().allocate(SIZE, 4096);
        q.readSnapshot(key, 0, s);
        return s.toArray(ValueLayout.JAVA_BYTE);
    }
}
