package io.qblk.nbd;

import io.qblk.testing.FaultyBackend;
import static io.qblk.nbd.NbdProtocol.*;
import static org.junit.jupiter.api.Assertions.*;

import io.qblk.io.Errno;
import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.Qcow2Exception;
import io.qblk.target.BlockTarget;
import io.qblk.target.RawTarget;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Errors keep their kind on the wire: the backend's ENOSPC reaches the NBD client as NBD_ENOSPC, and so on. */
class NbdErrorKindsTest implements NbdVariant {
    static final long SIZE = 1 << 20;
    @TempDir Path dir;
    NbdServer server;
    InetSocketAddress addr;
    FaultyBackend backend;

    @BeforeEach
    void start() throws IOException {
        Path f = dir.resolve("disk.raw");
        Files.write(f, new byte[(int) SIZE]);
        backend = new FaultyBackend(PosixFileBackend.open(f, false));
        server = new NbdServer(variant(NbdServer.Options.defaults().withMaxInFlight(4)));
        addr = server.bindTcp("127.0.0.1", 0);
        server.addExport("raw", new RawTarget(backend), false);
        server.addExport("corrupt", new Failing(new Qcow2Exception(Qcow2Exception.Kind.CORRUPT, "L2 entry points past the end of the file")), false);
        server.addExport("unsupported", new Failing(new Qcow2Exception(Qcow2Exception.Kind.UNSUPPORTED, "compressed cluster")), false);
    }

    @AfterEach
    void stop() {
        server.close();
    }

    private int writeError(String export) throws IOException {
        try (RawNbdClient c = new RawNbdClient(addr).hello().go(export, true, true)) {
            c.request(0, CMD_WRITE, 1, 0, 4096, new byte[4096]);
            RawNbdClient.Reply r = c.reply();
            return r.error();
        }
    }

    @Test
    void enospcFromTheBackendIsNbdEnospc() throws IOException {
        backend.fail(Errno.ENOSPC, FaultyBackend.MODIFYING);
        assertEquals(ENOSPC, writeError("raw"));
        backend.fail(Errno.EDQUOT, FaultyBackend.MODIFYING);
        assertEquals(ENOSPC, writeError("raw"), "a quota is out of space too");
        backend.heal();
        assertEquals(0, writeError("raw"), "the export serves again once space is back");
    }

    @Test
    void erofsIsNbdEpermAndEioStaysEio() throws IOException {
        backend.fail(Errno.EROFS, FaultyBackend.MODIFYING);
        assertEquals(EPERM, writeError("raw"));
        backend.fail(Errno.EIO, FaultyBackend.MODIFYING);
        assertEquals(EIO, writeError("raw"));
    }

    @Test
    void qcow2KindsMapThroughTheirErrno() throws IOException {
        assertEquals(EIO, writeError("corrupt"), "a refused (corrupt) cluster is EIO");
        assertEquals(ENOTSUP, writeError("unsupported"));
    }

    @Test
    void errnoToNbdCodeCoversTheProtocolSet() {
        assertEquals(EPERM, errorCode(Errno.EPERM));
        assertEquals(EPERM, errorCode(Errno.EACCES));
        assertEquals(EPERM, errorCode(Errno.EROFS));
        assertEquals(EIO, errorCode(Errno.EIO));
        assertEquals(ENOMEM, errorCode(Errno.ENOMEM));
        assertEquals(EINVAL, errorCode(Errno.EINVAL));
        assertEquals(ENOSPC, errorCode(Errno.ENOSPC));
        assertEquals(ENOSPC, errorCode(Errno.EFBIG));
        assertEquals(EOVERFLOW, errorCode(Errno.EOVERFLOW));
        assertEquals(ENOTSUP, errorCode(Errno.EOPNOTSUPP));
        assertEquals(ESHUTDOWN, errorCode(Errno.ESHUTDOWN));
        assertEquals(EIO, errorCode(Errno.ENOENT), "outside the protocol's set: EIO");
    }

    /** A target whose writes fail with one exception. */
    private record Failing(IOException error) implements BlockTarget {
        public long size() { return SIZE; }
        public boolean readOnly() { return false; }
        public void read(long offset, MemorySegment dst) { dst.fill((byte) 0); }
        public void write(long offset, MemorySegment src, boolean fua) throws IOException { throw error; }
        public void flush() {}
        public void discard(long offset, long length) {}
        public void writeZeroes(long offset, long length, boolean mayUnmap) {}
        public List<Extent> blockStatus(long offset, long length) { return List.of(new Extent(offset, length, false, false)); }
        public void close() {}
    }
}
