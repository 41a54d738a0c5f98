package io.qblk.cli;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.ImageLockTest;
import io.qblk.nbd.Proc;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 14's locking reproduction and issue 16's second export, with real qemu tools on both sides:
 * qblk export (a child JVM) against qemu-io/qemu-img, qemu-nbd against qblk's commands, -U.
 */
class ImageLockCliTest {
    @TempDir Path dir;

    Path qcow2(String name) throws Exception {
        return ImageLockTest.qcow2(dir, name);
    }

    /** `qblk export --nbd` in a child JVM; the URI line has been printed (the image is open) when this returns. */
    record Export(Process process, String uri) implements AutoCloseable {
        static Export start(String... args) throws Exception {
            String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
            List<String> cmd = new ArrayList<>(List.of(java, "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                    ExportMainForTest.class.getName(), "export", "--nbd", "127.0.0.1:0"));
            cmd.addAll(List.of(args));
            Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.DISCARD).start();
            String uri = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8)).readLine();
            if (uri == null) {
                p.destroyForcibly();
                throw new AssertionError("export printed no URI");
            }
            return new Export(p, uri);
        }

        int stop() throws InterruptedException {
            process.destroy(); // SIGTERM: flush and close
            assertTrue(process.waitFor(30, TimeUnit.SECONDS), "export did not stop");
            return process.exitValue();
        }

        @Override
        public void close() throws InterruptedException {
            if (process.isAlive()) {
                process.destroyForcibly();
                process.waitFor();
            }
        }
    }

    static void assertOneLine(QblkRunner.Result r, String expected) {
        assertEquals(1, r.exitCode(), r.err());
        assertEquals(1, r.err().lines().count(), "one line: " + r.err());
        assertTrue(r.err().contains(expected), r.err());
        assertFalse(r.err().contains("Exception"), r.err());
    }

    /** Issue 14: qemu-io wrote behind qblk export's back and lost the write at qblk's next flush. */
    @Test
    void qemuToolsCannotWriteBehindAnExportAndItsDataStays() throws Exception {
        Path img = qcow2("e.qcow2");
        try (Export e = Export.start(img.toString())) {
            Proc.run(30, "qemu-io", "-f", "raw", e.uri(), "-c", "write -P 0x11 10M 1M").ok("write through the export");
            ImageLockTest.assertQemuRefusesWhileWritten(img);
            assertTrue(Proc.run(30, "qemu-img", "info", "-U", img.toString()).ok("qemu-img info -U").out().contains("file format: qcow2"));

            // Issue 16: a second export of the same file, under another name, exits at once with one line.
            Path link = java.nio.file.Files.createLink(dir.resolve("link.qcow2"), img);
            QblkRunner.Result second = QblkRunner.run("export", "--nbd", "127.0.0.1:0", link.toString());
            assertOneLine(second, "image is in use for writing by another process (pid " + e.process().pid() + ")");
            Proc.run(30, "qemu-io", "-f", "raw", e.uri(), "-c", "read -P 0x11 10M 1M").ok("the export still serves");
            assertEquals(143, e.stop());
        }
        Proc.Result r = Proc.run(30, "qemu-io", "-c", "read -P 0x11 10M 1M", img.toString()).ok("read after the export stopped");
        assertFalse(r.out().contains("Pattern verification failed"), r.out());
        Proc.run(30, "qemu-img", "check", img.toString()).ok("qemu-img check");
    }

    @Test
    void qblkCommandsRespectQemuNbdWritingAndInspectWithForceShare() throws Exception {
        Path img = qcow2("n.qcow2");
        Proc.run(30, "qemu-io", "-c", "write -P 0x33 0 64k", img.toString()).ok("qemu-io");
        Process q = ImageLockTest.qemuNbd(img, dir, false);
        try {
            assertOneLine(QblkRunner.run("io", "-c", "write 0 4k", img.toString()), "image is in use for writing by another process (pid " + q.pid() + ")");
            assertOneLine(QblkRunner.run("info", img.toString()), "image is in use for writing by another process");
            assertOneLine(QblkRunner.run("check", img.toString()), "image is in use for writing by another process");
            assertOneLine(QblkRunner.run("export", "--nbd", "127.0.0.1:0", "--read-only", img.toString()), "in use for writing");

            QblkRunner.Result info = QblkRunner.run("info", "-U", img.toString());
            assertEquals(0, info.exitCode(), info.err());
            assertTrue(info.out().contains("file format: qcow2"), info.out());
            QblkRunner.Result check = QblkRunner.run("check", "--force-share", img.toString());
            assertEquals(0, check.exitCode(), check.out() + check.err());
            assertEquals(0, QblkRunner.run("map", "-U", img.toString()).exitCode());
            QblkRunner.Result read = QblkRunner.run("io", "-U", "-c", "read -P 0x33 0 64k", img.toString());
            assertEquals(0, read.exitCode(), read.out() + read.err());
            assertFalse(read.out().contains("Pattern verification failed"), read.out());
            assertOneLine(QblkRunner.run("io", "-U", "-c", "write 0 4k", img.toString()), "only read and flush");
            assertOneLine(QblkRunner.run("check", "-U", "-r", "leaks", img.toString()), "cannot be combined with -r");

            // compare, measure and convert's inputs: refused without -U, read with it
            QblkRunner.Result cmp = QblkRunner.run("compare", img.toString(), img.toString());
            assertEquals(2, cmp.exitCode(), cmp.out() + cmp.err());
            assertTrue(cmp.err().contains("image is in use for writing by another process"), cmp.err());
            cmp = QblkRunner.run("compare", "-U", img.toString(), img.toString());
            assertEquals(0, cmp.exitCode(), cmp.out() + cmp.err());
            assertEquals("Images are identical.\n", cmp.out());
            assertOneLine(QblkRunner.run("measure", "-O", "qcow2", img.toString()), "image is in use for writing by another process");
            QblkRunner.Result measure = QblkRunner.run("measure", "-U", "-O", "qcow2", img.toString());
            assertEquals(0, measure.exitCode(), measure.err());
            assertTrue(measure.out().startsWith("required size: "), measure.out());
            Path copy = dir.resolve("copy.qcow2");
            assertOneLine(QblkRunner.run("convert", "-O", "qcow2", img.toString(), copy.toString()), "image is in use for writing by another process");
            assertFalse(java.nio.file.Files.exists(copy), "a refused convert created its output");
            QblkRunner.Result conv = QblkRunner.run("convert", "-U", "-O", "qcow2", img.toString(), copy.toString());
            assertEquals(0, conv.exitCode(), conv.err());
            Proc.run(30, "qemu-io", "-c", "read -P 0x33 0 64k", copy.toString()).ok("the -U copy holds the data");
            // convert never replaces an image another process writes, -U or not (-U is for the inputs)
            Path src = qcow2("src.qcow2");
            assertOneLine(QblkRunner.run("convert", "-U", "-O", "qcow2", src.toString(), img.toString()), "image is in use for writing by another process");
            assertTrue(java.nio.file.Files.exists(img), "convert deleted an image in use");
        } finally {
            ImageLockTest.stop(q);
        }
        QblkRunner.Result w = QblkRunner.run("io", "-c", "write -P 0x44 0 4k", img.toString());
        assertEquals(0, w.exitCode(), w.err());
    }

    @Test
    void readersCoexist() throws Exception {
        Path img = qcow2("r.qcow2");
        Process q = ImageLockTest.qemuNbd(img, dir, true);
        try {
            QblkRunner.Result info = QblkRunner.run("info", img.toString());
            assertEquals(0, info.exitCode(), info.err());
            assertEquals(0, QblkRunner.run("io", "-r", "-c", "read 0 4k", img.toString()).exitCode());
            assertOneLine(QblkRunner.run("io", "-c", "write 0 4k", img.toString()), "which does not allow writing");
        } finally {
            ImageLockTest.stop(q);
        }
        try (Export e = Export.start("--read-only", img.toString())) {
            Proc.run(30, "qemu-img", "info", img.toString()).ok("qemu-img info next to a read-only export");
            Proc.run(30, "qemu-io", "-r", "-c", "read 0 4k", img.toString()).ok("qemu-io -r next to a read-only export");
            Proc.Result w = Proc.run(30, "qemu-io", "-c", "write 0 4k", img.toString());
            assertTrue(w.exit() != 0 && w.out().contains("Failed to get \"write\" lock"), w.out());
        }
    }
}
