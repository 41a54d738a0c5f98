package io.qblk.target;

import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.qcow2.Qcow2Exception;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.NoSuchFileException;
import org.junit.jupiter.api.Test;

/** The one errno mapping ublk completes requests with and NBD narrows to its codes. */
class TargetErrorsTest {
    @Test
    void systemCallErrorsKeepTheirErrno() {
        assertEquals(Errno.ENOSPC, TargetErrors.toErrno(new ErrnoException("pwrite", Errno.ENOSPC)));
        assertEquals(Errno.EROFS, TargetErrors.toErrno(new ErrnoException("pwrite", Errno.EROFS)));
        assertEquals(Errno.EDQUOT, TargetErrors.toErrno(new ErrnoException("fallocate", Errno.EDQUOT)));
    }

    @Test
    void qcow2ErrorsMapByKind() {
        for (Qcow2Exception.Kind k : Qcow2Exception.Kind.values())
            assertEquals(k.errno(), TargetErrors.toErrno(new Qcow2Exception(k, "x")), k.name());
        assertEquals(Errno.EIO, TargetErrors.toErrno(new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "refused cluster")));
        assertEquals(Errno.EROFS, TargetErrors.toErrno(new Qcow2Exception(Qcow2Exception.Kind.READ_ONLY, "corrupt bit set")));
    }

    @Test
    void wrappersKeepTheirCausesKindAndTheRestIsEio() {
        assertEquals(Errno.ENOSPC, TargetErrors.toErrno(new UncheckedIOException(new ErrnoException("pwrite", Errno.ENOSPC))));
        assertEquals(Errno.ENOSPC, TargetErrors.toErrno(new IOException("write failed", new ErrnoException("pwrite", Errno.ENOSPC))));
        assertEquals(Errno.ENOENT, TargetErrors.toErrno(new NoSuchFileException("/x")));
        assertEquals(Errno.EINVAL, TargetErrors.toErrno(new IllegalArgumentException("bad offset")));
        assertEquals(Errno.ENOMEM, TargetErrors.toErrno(new OutOfMemoryError()));
        assertEquals(Errno.EIO, TargetErrors.toErrno(new IOException("short read")));
        assertEquals(Errno.EIO, TargetErrors.toErrno(new IllegalStateException("bug")));
    }
}
