package io.qblk.service;

import java.io.PrintStream;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntConsumer;
import org.jboss.logging.Logger;
import sun.misc.Signal;
import sun.misc.SignalHandler;

/**
 * SIGTERM and SIGINT for {@code qblk serve}: the first one starts the normal graceful shutdown, a
 * second one (either signal) while that shutdown still runs ends the process at once.
 *
 * <pre>
 *   1st TERM/INT ──► the JVM's own handler: System.exit(128+n) ──► shutdown hooks ──► Quarkus stops
 *                    ──► DeviceManager.stopAll: refuse I/O, detach, drain, flush, close (exit 143 / 130)
 *   2nd TERM/INT ──► one line on stderr, Runtime.halt(FORCED_EXIT_CODE): no hooks, no flush;
 *                    qcow2 images may keep their dirty bit and are repaired when next opened
 * </pre>
 *
 * A graceful shutdown can take long or never end: a NBD client that stops reading its replies
 * keeps requests in flight, a device's I/O can hang on a dead disk. The second signal is the way out
 * that does not need {@code kill -9} and says what it did.
 */
public final class ShutdownSignals {
    private static final Logger LOG = Logger.getLogger(ShutdownSignals.class);

    /** Exit status after a forced exit (EX_TEMPFAIL: images may need the repair done on next open). */
    public static final int FORCED_EXIT_CODE = 75;

    private static final List<String> SIGNALS = List.of("TERM", "INT");
    private static ShutdownSignals installed;

    private final AtomicInteger received = new AtomicInteger();
    private final IntConsumer halt;
    private final PrintStream err;

    ShutdownSignals(IntConsumer halt, PrintStream err) {
        this.halt = halt;
        this.err = err;
    }

    /**
     * Installs the handlers once per JVM. Signals the process ignores (e.g. SIGINT of a background
     * job started by a non-interactive shell) stay ignored; signals the JVM reserves ({@code -Xrs})
     * keep their behaviour.
     */
    public static synchronized void install() {
        if (installed != null) return;
        ShutdownSignals s = new ShutdownSignals(code -> Runtime.getRuntime().halt(code), System.err);
        for (String name : SIGNALS) {
            Signal sig = new Signal(name);
            Chained handler = new Chained(s);
            try {
                handler.previous = Signal.handle(sig, handler);
                if (handler.previous == SignalHandler.SIG_IGN) Signal.handle(sig, SignalHandler.SIG_IGN);
            } catch (IllegalArgumentException e) {
                LOG.debugf("SIG%s: left to the JVM (%s)", name, e.getMessage());
            }
        }
        installed = s;
    }

    /** The handler of one signal, with the handler it replaced (the JVM's: exit with 128 + signal number). */
    private static final class Chained implements SignalHandler {
        private final ShutdownSignals owner;
        volatile SignalHandler previous;

        Chained(ShutdownSignals owner) { this.owner = owner; }

        @Override
        public void handle(Signal sig) { owner.handle(sig, previous); }
    }

    /** One delivered signal: the first goes to {@code previous} (graceful), the second halts. */
    void handle(Signal sig, SignalHandler previous) {
        String name = "SIG" + sig.getName();
        if (received.incrementAndGet() == 1) {
            LOG.infof("%s: shutting down (drain, flush, close every device); send it again to force exit", name);
            if (previous == null || previous == SignalHandler.SIG_DFL || previous == SignalHandler.SIG_IGN) {
                System.exit(128 + sig.getNumber());
            } else {
                previous.handle(sig);
            }
            return;
        }
        err.println("qblk: second " + name + ": forcing exit (status " + FORCED_EXIT_CODE
                + "), images may be left dirty; they are repaired on next open");
        err.flush();
        halt.accept(FORCED_EXIT_CODE);
    }
}
