package io.qblk.nbd;

import io.qblk.io.IoBackend;
import io.qblk.io.PosixFileBackend;
import io.qblk.target.FileIo;
import io.qblk.uring.UringFileBackend;
import java.io.IOException;
import java.nio.file.Path;

/**
 * How an NBD test class sets up its server and targets: as written by default, and with every
 * connection on a carrier ({@link NbdServer.Options#carrier()}) in its {@code *CarrierTest} subclass,
 * which implements {@link OnCarrier}. So the same suite checks both designs.
 */
interface NbdVariant {
    /** The server's options. */
    default NbdServer.Options variant(NbdServer.Options o) {
        return o;
    }

    /** File I/O of the targets the test opens through {@code TargetOpener}. */
    default FileIo fileIo() {
        return FileIo.SYSCALLS;
    }

    /** A raw export's file. */
    default IoBackend openFile(Path p) throws IOException {
        return PosixFileBackend.open(p, false);
    }

    /** Each connection on a ring thread of its own; the targets' file I/O through that ring. */
    interface OnCarrier extends NbdVariant {
        @Override
        default NbdServer.Options variant(NbdServer.Options o) {
            return o.withCarrier(true);
        }

        @Override
        default FileIo fileIo() {
            return FileIo.CALLER_RING;
        }

        @Override
        default IoBackend openFile(Path p) throws IOException {
            return UringFileBackend.openForCallerRing(p, false);
        }
    }
}
