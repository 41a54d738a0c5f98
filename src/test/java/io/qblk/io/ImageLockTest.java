package io.qblk.io;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.nbd.Proc;
import io.qblk.uring.FileBackends;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * qemu's image locking as {@link ImageLock} implements it: the same lock bytes as qemu-nbd in each
 * mode, qemu's tools refused by qblk's opens and the other way round, readers sharing, and opens of
 * one file through other names (hard link, symbolic link, another spelling) refused within the process.
 */
public class ImageLockTest {
    @TempDir Path dir;

    Path qcow2(String name) throws Exception {
        return qcow2(dir, name);
    }

    /** An empty 64 MiB qcow2 image made by qemu-img. */
    public static Path qcow2(Path dir, String name) throws Exception {
        Path p = dir.resolve(name);
        Proc.run(30, "qemu-img", "create", "-q", "-f", "qcow2", p.toString(), "64M").ok("qemu-img create");
        return p;
    }

    /** The bytes locked on {@code image} by the open file descriptions of process {@code pid}, from fdinfo. */
    static TreeSet<Long> lockedBytes(long pid, Path image) throws IOException {
        String key;
        try (PosixFileBackend f = ImageLock.forceShared(() -> PosixFileBackend.open(image, true))) {
            key = " " + ImageLock.FileId.of(f.fd(), image.toString()).procKey() + " ";
        }
        TreeSet<Long> bytes = new TreeSet<>();
        try (var fds = Files.list(Path.of("/proc/" + pid + "/fdinfo"))) {
            for (Path fd : fds.toList()) {
                String text;
                try {
                    text = Files.readString(fd);
                } catch (IOException e) {
                    continue;
                }
                for (String line : text.split("\n")) {
                    int at = line.indexOf(key);
                    if (!line.startsWith("lock:") || at < 0 || !line.contains("OFDLCK")) continue;
                    String[] r = line.substring(at + key.length()).trim().split("\\s+");
                    for (long b = Long.parseLong(r[0]); b <= Long.parseLong(r[1]); b++) bytes.add(b);
                }
            }
        }
        return bytes;
    }

    /** qemu-nbd serving {@code image} on a unix socket; its locks are in place when this returns. */
    /** While qblk writes {@code img}: qemu-io cannot write it and qemu-img info (without -U) cannot open it. */
    public static void assertQemuRefusesWhileWritten(Path img) throws Exception {
        Proc.Result w = Proc.run(30, "qemu-io", "-c", "write -P 0x22 10M 1M", img.toString());
        assertNotEquals(0, w.exit(), w.out());
        assertTrue(w.out().contains("Failed to get \"write\" lock"), w.out());
        Proc.Result info = Proc.run(30, "qemu-img", "info", img.toString());
        assertNotEquals(0, info.exit(), info.out());
        assertTrue(info.out().contains("Failed to get shared \"write\" lock"), info.out());
    }

    public static Process qemuNbd(Path image, Path dir, boolean readOnly) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("qemu-nbd", "-f", "qcow2", "-k", dir.resolve("q" + System.nanoTime() + ".sock").toString()));
        if (readOnly) cmd.add("-r");
        cmd.add(image.toString());
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (lockedBytes(p.pid(), image).isEmpty()) {
            if (!p.isAlive()) throw new AssertionError("qemu-nbd exited with " + p.exitValue());
            if (System.nanoTime() > deadline) throw new AssertionError("qemu-nbd took no lock on " + image);
            Thread.sleep(20);
        }
        return p;
    }

    /** SIGTERM, then SIGKILL after 10 s (a child may inherit a blocked SIGTERM, e.g. under the fuzz agent). */
    public static void stop(Process p) throws InterruptedException {
        p.destroy();
        if (!p.waitFor(10, java.util.concurrent.TimeUnit.SECONDS)) p.destroyForcibly().waitFor();
    }

    enum Mode { READ_WRITE, READ, FORCE_SHARE }

    static PosixFileBackend open(Path p, Mode m) throws IOException {
        return switch (m) {
            case READ_WRITE -> PosixFileBackend.open(p, false);
            case READ -> PosixFileBackend.open(p, true);
            case FORCE_SHARE -> ImageLock.forceShared(() -> PosixFileBackend.open(p, true));
        };
    }

    @ParameterizedTest
    @EnumSource(Mode.class)
    void takesTheLockBytesQemuTakes(Mode mode) throws Exception {
        Path img = qcow2("bytes.qcow2");
        TreeSet<Long> ours;
        try (PosixFileBackend f = open(img, mode)) {
            ours = lockedBytes(ProcessHandle.current().pid(), img);
        }
        assertEquals(new TreeSet<>(), lockedBytes(ProcessHandle.current().pid(), img), "close releases every byte");
        if (mode == Mode.FORCE_SHARE) {
            assertEquals(new TreeSet<>(List.of(100L)), ours, "force-share: consistent read only, shares everything");
            return;
        }
        Process q = qemuNbd(img, dir, mode == Mode.READ);
        try {
            assertEquals(lockedBytes(q.pid(), img), ours, "qblk's lock bytes equal qemu-nbd's in mode " + mode);
        } finally {
            stop(q);
        }
        assertEquals(mode == Mode.READ ? List.of(100L, 201L, 203L) : List.of(100L, 101L, 103L, 201L, 203L), List.copyOf(ours));
    }

    @Test
    void qemuToolsRespectAWriterInThisProcess() throws Exception {
        Path img = qcow2("w.qcow2");
        try (PosixFileBackend f = PosixFileBackend.open(img, false)) {
            assertQemuRefusesWhileWritten(img);
            Proc.run(30, "qemu-img", "info", "-U", img.toString()).ok("qemu-img info -U while qblk writes");
        }
        Proc.run(30, "qemu-io", "-c", "write -P 0x22 10M 1M", img.toString()).ok("qemu-io once qblk closed the image");
    }

    @Test
    void qemuReadersShareWithAReaderAndRefuseWriters() throws Exception {
        Path img = qcow2("r.qcow2");
        try (PosixFileBackend f = PosixFileBackend.open(img, true)) {
            Proc.run(30, "qemu-img", "info", img.toString()).ok("qemu-img info next to a qblk reader");
            Proc.run(30, "qemu-io", "-r", "-c", "read 0 4k", img.toString()).ok("qemu-io -r next to a qblk reader");
            Proc.Result w = Proc.run(30, "qemu-io", "-c", "write 0 4k", img.toString());
            assertNotEquals(0, w.exit(), w.out());
            assertTrue(w.out().contains("Failed to get \"write\" lock"), w.out());
        }
    }

    @Test
    void qblkRespectsQemuNbdWriting() throws Exception {
        Path img = qcow2("q.qcow2");
        Process q = qemuNbd(img, dir, false);
        try {
            var w = assertThrows(ImageLock.InUseException.class, () -> PosixFileBackend.open(img, false));
            assertTrue(w.getMessage().contains("image is in use for writing by another process (pid " + q.pid() + ")"), w.getMessage());
            var r = assertThrows(ImageLock.InUseException.class, () -> FileBackends.open(img, true, CacheMode.NONE, AioMode.IO_URING));
            assertTrue(r.getMessage().contains("in use for writing by another process (pid " + q.pid() + "), which holds qemu's \"write\" permission"), r.getMessage());
            try (PosixFileBackend f = open(img, Mode.FORCE_SHARE)) {
                assertTrue(f.size() > 0, "force-share opens while qemu-nbd writes");
            }
        } finally {
            stop(q);
        }
        PosixFileBackend.open(img, false).close();
    }

    @Test
    void qblkSharesWithAQemuReaderButDoesNotWrite() throws Exception {
        Path img = qcow2("qr.qcow2");
        Process q = qemuNbd(img, dir, true);
        try {
            open(img, Mode.READ).close();
            var w = assertThrows(ImageLock.InUseException.class, () -> PosixFileBackend.open(img, false));
            assertTrue(w.getMessage().contains("is open by another process (pid " + q.pid() + "), which does not allow writing"), w.getMessage());
        } finally {
            stop(q);
        }
    }

    @Test
    void otherNamesOfAnOpenImageAreRefusedWithinTheProcess() throws Exception {
        Path img = qcow2("a.qcow2");
        Path hard = Files.createLink(dir.resolve("b.qcow2"), img);
        Path soft = Files.createSymbolicLink(dir.resolve("c.qcow2"), img);
        Files.createDirectories(dir.resolve("sub"));
        Path spelled = dir.resolve("sub/../a.qcow2");
        try (PosixFileBackend f = ImageLock.heldBy("device 'a'", () -> PosixFileBackend.open(img, false))) {
            for (Path other : List.of(hard, soft, spelled, img)) {
                var e = assertThrows(ImageLock.InUseException.class, () -> PosixFileBackend.open(other, false), other.toString());
                assertTrue(e.getMessage().startsWith(other + ": image is in use for writing by device 'a'"), e.getMessage());
                if (!other.equals(img)) assertTrue(e.getMessage().contains("(as " + img + ")"), e.getMessage());
                assertFalse(e.getMessage().contains("\n"), "one line");
                assertThrows(ImageLock.InUseException.class, () -> PosixFileBackend.open(other, true), "a reader refuses the writer");
            }
            open(hard, Mode.FORCE_SHARE).close();
        }
        try (PosixFileBackend a = PosixFileBackend.open(hard, true); PosixFileBackend b = PosixFileBackend.open(soft, true)) {
            var e = assertThrows(ImageLock.InUseException.class, () -> PosixFileBackend.open(img, false));
            assertTrue(e.getMessage().contains("image is open by this process (as " + hard + "), which does not allow writing"), e.getMessage());
        }
        PosixFileBackend.open(soft, false).close();
    }

    @ParameterizedTest
    @EnumSource(AioMode.class)
    void aDirectAndBufferedPairIsOneOwner(AioMode aio) throws Exception {
        Path img = qcow2("pair.qcow2");
        try (IoBackend f = FileBackends.open(img, false, CacheMode.NONE, aio)) {
            assertTrue(f.size() > 0);
            assertThrows(ImageLock.InUseException.class, () -> FileBackends.open(img, false, CacheMode.NONE, aio));
            Proc.Result w = Proc.run(30, "qemu-io", "-c", "write 0 4k", img.toString());
            assertTrue(w.out().contains("Failed to get \"write\" lock"), w.out());
        }
        try (IoBackend f = FileBackends.open(img, false, CacheMode.NONE, aio)) {
            assertFalse(f.readOnly(), "closing the pair released its lock");
        }
    }

    @Test
    void sameFileComparesIdentity() throws Exception {
        Path img = qcow2("s.qcow2");
        Path hard = Files.createLink(dir.resolve("h.qcow2"), img);
        assertTrue(ImageLock.sameFile(img, hard));
        assertTrue(ImageLock.sameFile(dir.resolve("missing"), dir.resolve("x/../missing")));
        assertFalse(ImageLock.sameFile(img, qcow2("t.qcow2")));
    }
}
