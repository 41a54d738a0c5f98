package io.qblk.qcow2;

import static io.qblk.qcow2.TestImages.qemuImg;
import static io.qblk.qcow2.TestImages.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Persistent dirty bitmaps against qemu (issue 15, "Done when"): the same writes through qblk and
 * through qemu-io leave bitmaps with the same dirty extents (read back by qemu-nbd -B and nbdinfo),
 * qemu-img check finds the qblk image clean (no leaks, no "lacking bitmap support" warning) and
 * qemu-img bitmap --remove still finds the bitmap.
 */
class BitmapsInteropTest {
    @TempDir Path dir;

    /** Guest operations applied to both images: qemu-io commands and their qblk equivalents. */
    private static final String[] OPS = {"write 0 4k", "write 1M 64k", "write 9M 300k", "write -z 20M 1M", "discard 30M 64k", "write 63M 1M"};

    private static void apply(Qcow2Image img, String op) throws IOException {
        String[] w = op.split(" ");
        switch (w[0]) {
            case "write" -> {
                if (w[1].equals("-z")) img.writeZeroes(size(w[2]), size(w[3]), false);
                else img.write(size(w[1]), TestImages.pattern(size(w[2]), 7));
            }
            case "discard" -> img.discard(size(w[1]), size(w[2]));
            default -> throw new IllegalArgumentException(op);
        }
    }

    private static long size(String s) {
        long m = switch (s.charAt(s.length() - 1)) {
            case 'k' -> 1024L;
            case 'M' -> 1L << 20;
            default -> 1L;
        };
        return m == 1 ? Long.parseLong(s) : Long.parseLong(s.substring(0, s.length() - 1)) * m;
    }

    private Path withBitmaps(String name) throws Exception {
        Path img = dir.resolve(name);
        assertEquals(0, qemuImg("create", "-q", "-f", "qcow2", img.toString(), "64M").exit());
        assertEquals(0, qemuImg("bitmap", "--add", img.toString(), "b0").exit());
        assertEquals(0, qemuImg("bitmap", "--add", "-g", "128k", img.toString(), "b1").exit());
        assertEquals(0, qemuImg("bitmap", "--add", "--disable", img.toString(), "off").exit());
        assertEquals(0, TestImages.qemuIo(img, "write 40M 64k").exit()); // bits set before qblk opens it
        return img;
    }

    /** The dirty map qemu-nbd serves for {@code bitmap} of {@code img}. */
    static String dirtyMap(Path img, String bitmap) throws Exception {
        TestImages.Result r = run("nbdinfo", "--map=qemu:dirty-bitmap:" + bitmap, "--", "[", "qemu-nbd", "-r", "-f", "qcow2", "-B", bitmap, img.toString(), "]");
        assertEquals(0, r.exit(), r.out());
        return r.out();
    }

    static void assertQemuCheckClean(Path img) throws Exception {
        TestImages.Result r = qemuImg("check", "-f", "qcow2", img.toString());
        assertEquals(0, r.exit(), r.out());
        assertTrue(r.out().contains("No errors were found on the image."), r.out());
        assertFalse(r.out().contains("leaked"), r.out());
        assertFalse(r.out().contains("lacking bitmap support"), r.out());
    }

    @Test
    void sameWritesGiveTheSameBitmapsAsQemu() throws Exception {
        Path ours = withBitmaps("ours.qcow2");
        Path ref = dir.resolve("ref.qcow2");
        Files.copy(ours, ref, StandardCopyOption.REPLACE_EXISTING);
        try (Qcow2Image img = Qcow2Image.open(ours, OpenOptions.defaults())) {
            assertEquals(List.of("b0", "b1"), img.bitmaps().stream().filter(b -> b.flags().contains("auto")).map(BitmapInfo::name).toList());
            for (String op : OPS) apply(img, op);
            assertNotNull(img.dirtyExtents("b0"));
            assertEquals(0, img.dirtyExtents("off").size(), "a disabled bitmap is not tracked");
        }
        for (String op : OPS) assertEquals(0, TestImages.qemuIo(ref, op).exit(), op);

        assertQemuCheckClean(ours);
        for (String b : List.of("b0", "b1", "off")) {
            String expected = dirtyMap(ref, b);
            assertEquals(expected, dirtyMap(ours, b), "bitmap " + b);
        }
        assertTrue(dirtyMap(ours, "b0").contains("9437184      327680    1  dirty"), dirtyMap(ours, "b0"));
        assertTrue(dirtyMap(ours, "off").lines().noneMatch(l -> l.endsWith(" dirty")), "the disabled bitmap stayed clean");
        // our check agrees
        try (Qcow2Image img = Qcow2Image.open(ours, OpenOptions.defaults().withReadOnly(true))) {
            CheckReport r = img.check(RepairMode.NONE);
            assertEquals(0, r.corruptions());
            assertEquals(0, r.leaks());
        }
        TestImages.Result rm = qemuImg("bitmap", "--remove", ours.toString(), "b0");
        assertEquals(0, rm.exit(), rm.out());
        assertQemuCheckClean(ours);
    }

    @Test
    void secondOpenKeepsEarlierBits() throws Exception {
        Path ours = withBitmaps("twice.qcow2");
        Path ref = dir.resolve("twice-ref.qcow2");
        Files.copy(ours, ref, StandardCopyOption.REPLACE_EXISTING);
        for (String op : OPS) {
            try (Qcow2Image img = Qcow2Image.open(ours, OpenOptions.defaults())) {
                apply(img, op);
            }
            assertEquals(0, TestImages.qemuIo(ref, op).exit(), op);
        }
        assertQemuCheckClean(ours);
        assertEquals(dirtyMap(ref, "b0"), dirtyMap(ours, "b0"));
        assertEquals(dirtyMap(ref, "b1"), dirtyMap(ours, "b1"));
    }

    @Test
    void inUseWhileOpenAndAfterACrash() throws Exception {
        Path ours = withBitmaps("crash.qcow2");
        Path copy = dir.resolve("crash-copy.qcow2");
        try (Qcow2Image img = Qcow2Image.open(ours, OpenOptions.defaults())) {
            img.write(0, TestImages.pattern(65536, 1));
            img.flush();
            // what a killed process leaves: the tracked bitmaps flagged in use (inconsistent), no more
            Files.copy(ours, copy, StandardCopyOption.REPLACE_EXISTING);
        }
        TestImages.Result info = qemuImg("info", "-U", "--output=json", copy.toString());
        assertTrue(info.out().replaceAll("\\s", "").contains("\"flags\":[\"in-use\",\"auto\"],\"name\":\"b0\""), info.out());
        TestImages.Result check = qemuImg("check", "-f", "qcow2", copy.toString());
        assertTrue(check.exit() == 0 || check.out().contains("leaked"), check.out());
        // qblk keeps an inconsistent bitmap as it is and does not track it
        try (Qcow2Image img = Qcow2Image.open(copy, OpenOptions.defaults())) {
            assertNull(img.dirtyExtents("b0"));
            assertTrue(img.bitmaps().getFirst().flags().contains("in-use"));
            img.write(1 << 20, TestImages.pattern(4096, 2));
        }
        assertTrue(qemuImg("info", "--output=json", copy.toString()).out().replaceAll("\\s", "").contains("\"flags\":[\"in-use\",\"auto\"],\"name\":\"b0\""));
        // a read-only open writes nothing and does not mark bitmaps in use
        byte[] before = Files.readAllBytes(ours);
        try (Qcow2Image img = Qcow2Image.open(ours, OpenOptions.defaults())) {
            TestImages.read(img, 0, 4096);
        }
        assertTrue(java.util.Arrays.equals(before, Files.readAllBytes(ours)), "an open that only reads leaves the file untouched");
    }

    @Test
    void corruptDirectoryIsAClearError() throws Exception {
        Path img = withBitmaps("bad.qcow2");
        // granularity bits of the first entry (directory offset from the header extension)
        long dirOff;
        try (Qcow2Image i = Qcow2Image.open(img, OpenOptions.defaults().withReadOnly(true))) {
            assertEquals(3, i.bitmaps().size());
        }
        byte[] head = Files.readAllBytes(img);
        Qcow2Header h = Qcow2Header.parse(java.util.Arrays.copyOf(head, 65536), head.length);
        dirOff = h.bitmapDirectoryOffset;
        try (var ch = java.nio.channels.FileChannel.open(img, java.nio.file.StandardOpenOption.WRITE)) {
            ch.write(java.nio.ByteBuffer.wrap(new byte[] {60}), dirOff + 17);
        }
        Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> Qcow2Image.open(img, OpenOptions.defaults()));
        assertEquals(Qcow2Exception.Kind.CORRUPT, e.kind());
        assertTrue(e.getMessage().contains("granularity"), e.getMessage());
        try (Qcow2Image i = Qcow2Image.open(img, OpenOptions.defaults().withReadOnly(true))) {
            assertTrue(i.bitmaps().isEmpty(), "a read-only open goes on without the bitmaps");
            TestImages.read(i, 0, 4096);
        }
    }
}
