package io.qblk.nbd;

import io.qblk.io.ErrnoException;
import io.qblk.io.LibC;
import io.qblk.util.DebugSwitches;
import java.io.IOException;
import java.lang.reflect.Method;
import java.nio.channels.SocketChannel;
import java.util.logging.Logger;

/**
 * The descriptor behind a {@link SocketChannel}, for io_uring socket I/O on a connection's carrier.
 *
 * <p>The JDK does not expose it: {@code sun.nio.ch.SelChImpl#getFDVal} is reachable with
 * {@code --add-opens java.base/sun.nio.ch=ALL-UNNAMED} (the qblk launcher, the jar manifest's
 * {@code Add-Opens}, surefire and quarkus:dev pass it). This class is the only place that touches it;
 * the first use looks it up and, if that fails (or {@code QBLK_NBD_RING_RECV=0}), {@link #dup} returns
 * -1 from then on, one log line says why, and connections keep reading through the JDK.
 *
 * <p>{@link #dup} hands out a duplicate the caller owns and closes: the ring never reads a descriptor
 * number the JDK may have closed and reused meanwhile, and a shutdown of the socket (what
 * {@code SocketChannel.shutdownInput} does) still ends a pending RECV, as both share the socket.
 */
final class SocketFd {
    private static final Logger LOG = Logger.getLogger(SocketFd.class.getName());
    private static final Method GET_FD;

    static {
        Method m = null;
        String why = null;
        if (!DebugSwitches.process().nbdRingRecv()) {
            why = "turned off (QBLK_NBD_RING_RECV=0)";
        } else {
            try {
                m = Class.forName("sun.nio.ch.SelChImpl").getMethod("getFDVal");
                m.setAccessible(true);
            } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
                m = null;
                why = e.getClass().getSimpleName() + ": " + e.getMessage()
                        + (e instanceof java.lang.reflect.InaccessibleObjectException ? " (needs --add-opens java.base/sun.nio.ch=ALL-UNNAMED)" : "");
            }
        }
        GET_FD = m;
        if (why != null) LOG.info("NBD connections on a carrier read their sockets through the JDK (io_uring RECV unavailable: " + why + ")");
    }

    private SocketFd() {}

    /** Whether {@link #dup} can work here. */
    static boolean available() {
        return GET_FD != null;
    }

    /** A close-on-exec duplicate of {@code channel}'s descriptor, owned by the caller; -1 when unavailable. */
    static int dup(SocketChannel channel) throws IOException {
        if (GET_FD == null) return -1;
        int fd;
        try {
            fd = (int) GET_FD.invoke(channel);
        } catch (ReflectiveOperationException | RuntimeException e) {
            return -1;
        }
        if (fd < 0) throw new java.nio.channels.ClosedChannelException();
        int d = LibC.fcntl(fd, LibC.F_DUPFD_CLOEXEC, 0);
        if (d < 0) throw new ErrnoException("fcntl F_DUPFD_CLOEXEC of a socket", LibC.errno());
        return d;
    }
}
