package io.qblk.target;

import io.qblk.testing.FaultyBackend;
import java.util.Set;
import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.CreateOptions;
import io.qblk.qcow2.Qcow2Exception;
import io.qblk.qcow2.Qcow2Image;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The one open path: format probing, the leak-free raw open, the default backing policy. */
class TargetOpenerTest {
    @TempDir Path dir;

    @Test
    void rawTargetClosesItsBackendWhenItCannotBeMade() throws IOException {
        Path p = dir.resolve("r.raw");
        Files.write(p, new byte[4096]);
        FaultyBackend f = new FaultyBackend(PosixFileBackend.open(p, false));
        f.fail(Errno.EIO, Set.of(FaultyBackend.Op.SIZE));
        ErrnoException e = assertThrows(ErrnoException.class, () -> TargetOpener.rawTarget(f));
        assertEquals(Errno.EIO, e.errno());
        assertTrue(f.closed, "the backend is closed, not leaked, when the raw target cannot be made");
    }

    @Test
    void probeTellsQcow2FromRawByTheHeaderMagic() throws IOException {
        Path q = dir.resolve("a.qcow2"), r = dir.resolve("a.raw"), tiny = dir.resolve("tiny");
        Qcow2Image.create(q, CreateOptions.defaults(1 << 20));
        Files.write(r, new byte[1024]);
        Files.write(tiny, new byte[]{'Q', 'F'});
        assertEquals(ImageFormat.QCOW2, ImageFormat.probe(q));
        assertEquals(ImageFormat.RAW, ImageFormat.probe(r));
        assertEquals(ImageFormat.RAW, ImageFormat.probe(tiny));
        assertThrows(java.nio.file.NoSuchFileException.class, () -> ImageFormat.probe(dir.resolve("none")));
        try (BlockTarget t = TargetOpener.open(q, TargetOptions.defaults())) {
            assertInstanceOf(Qcow2Target.class, t);
        }
        try (BlockTarget t = TargetOpener.open(r, TargetOptions.defaults())) {
            assertInstanceOf(RawTarget.class, t);
            assertEquals(1024, t.size());
        }
        try (BlockTarget t = TargetOpener.open(null, TargetOptions.defaults().withFormat(ImageFormat.NULL).withNullSize(1 << 20))) {
            assertInstanceOf(NullTarget.class, t);
        }
    }

    @Test
    void parseKnowsTheThreeFormatsAndNothingElse() {
        assertEquals(ImageFormat.QCOW2, ImageFormat.parse("QCOW2"));
        assertEquals(ImageFormat.NULL, ImageFormat.parse("null"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> ImageFormat.parse("vmdk"));
        assertTrue(e.getMessage().contains("qcow2, raw, null"), e.getMessage());
    }

    @Test
    void aBackingFileThatIsNoRegularFileIsRefusedByDefault() throws Exception {
        Path top = dir.resolve("top.qcow2");
        Process p = new ProcessBuilder("qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "/dev/zero", "-F", "raw",
                top.toString(), "1M").redirectErrorStream(true).start();
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), new String(p.getInputStream().readAllBytes()));
        Qcow2Exception e = assertThrows(Qcow2Exception.class, () -> TargetOpener.open(top, TargetOptions.defaults()));
        assertEquals(Qcow2Exception.Kind.BACKING_REFUSED, e.kind());
        assertTrue(e.getMessage().startsWith(top.toString()), "names the image: " + e.getMessage());
        assertTrue(e.getMessage().contains("not a regular file"), e.getMessage());
    }

    @Test
    void fileIoModesByTheirConfigurationNames() {
        // auto: every size on the ring when the ring thread carries the tags (nothing may block it)
        FileIo auto = io.qblk.uring.VirtualCarrier.available() ? FileIo.CALLER_RING : FileIo.CALLER_RING_LARGE;
        assertEquals(auto, FileIo.forUblk("auto"));
        assertEquals(auto, FileIo.forUblk(null));
        assertEquals(FileIo.CALLER_RING, FileIo.forUblk("ring"));
        assertEquals(FileIo.SYSCALLS, FileIo.forUblk("pread"));
        assertThrows(IllegalArgumentException.class, () -> FileIo.forUblk("fast"));
    }
}
