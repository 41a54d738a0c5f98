package io.qblk.uring;

import io.qblk.util.DebugSwitches;
import java.lang.reflect.Constructor;
import java.util.ArrayDeque;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.logging.Logger;

/**
 * Virtual threads whose continuations run on an {@link Executor} of our choosing (a {@link RingThread}
 * owner: a ublk queue's tags then run on that queue's ring thread, as ublksrv's coroutines do).
 *
 * <p>The JDK has no public API for this. {@code java.lang.ThreadBuilders$VirtualThreadBuilder} keeps a
 * package-private constructor taking the scheduler {@code Executor}; it is reachable with
 * {@code --add-opens java.base/java.lang=ALL-UNNAMED} (the qblk launcher, the jar manifest's
 * {@code Add-Opens}, surefire and quarkus:dev pass it). This class is the only place that touches it:
 * the first use probes it (a virtual thread started, parked, unparked and finished on a scheduler that
 * runs tasks on the probing platform thread) and, if anything fails, {@link #available()} is false,
 * one log line says why, and callers keep the default scheduler.
 *
 * <p>{@code QBLK_CARRIER=0} (environment) or {@code -Dqblk.carrier=off} turns it off deliberately
 * (comparisons, tests of the fallback), read by {@link DebugSwitches}.
 */
public final class VirtualCarrier {
    private static final Logger LOG = Logger.getLogger(VirtualCarrier.class.getName());
    private static final Constructor<?> BUILDER;
    private static final String UNAVAILABLE;

    static {
        Constructor<?> ctor = null;
        String why;
        if (!DebugSwitches.process().carrier()) {
            why = "turned off (QBLK_CARRIER=0 or -Dqblk.carrier=off)";
        } else {
            try {
                Class<?> c = Class.forName("java.lang.ThreadBuilders$VirtualThreadBuilder");
                ctor = c.getDeclaredConstructor(Executor.class);
                ctor.setAccessible(true);
                why = probe(ctor);
            } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
                why = e.getClass().getSimpleName() + ": " + e.getMessage()
                        + (e instanceof java.lang.reflect.InaccessibleObjectException ? " (needs --add-opens java.base/java.lang=ALL-UNNAMED)" : "");
            }
        }
        BUILDER = why == null ? ctor : null;
        UNAVAILABLE = why;
        if (why != null) {
            LOG.info("virtual threads stay on the default scheduler (per-queue ring carrier unavailable: " + why + ")");
        }
    }

    private VirtualCarrier() {
    }

    /** Whether virtual threads can be given a scheduler of our own here. */
    public static boolean available() {
        return BUILDER != null;
    }

    /** Why {@link #available()} is false, or null. */
    public static String unavailableReason() {
        return UNAVAILABLE;
    }

    /**
     * A builder of virtual threads whose continuations run through {@code scheduler.execute}; the
     * default scheduler's builder ({@link Thread#ofVirtual()}) when the carrier is unavailable.
     */
    public static Thread.Builder.OfVirtual builder(Executor scheduler) {
        if (BUILDER == null) return Thread.ofVirtual();
        try {
            return (Thread.Builder.OfVirtual) BUILDER.newInstance(scheduler);
        } catch (ReflectiveOperationException e) { // probed at start-up: not expected
            throw new IllegalStateException("virtual thread builder with a scheduler: " + e, e);
        }
    }

    /** Runs one virtual thread through park and unpark on a scheduler of a fresh platform thread; null when it worked. */
    private static String probe(Constructor<?> ctor) {
        Probe p = new Probe(ctor);
        // The probe's code lives in a nested class: a lambda of this class would wait for this class's
        // initialization, which is waiting for the probe.
        Thread probe = Thread.ofPlatform().name("qblk-carrier-probe").daemon(true).unstarted(p);
        probe.start();
        try {
            probe.join(5_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "interrupted while probing";
        }
        return p.result.get();
    }

    private static final class Probe implements Runnable {
        final Constructor<?> ctor;
        final AtomicReference<String> result = new AtomicReference<>("probe did not finish");
        final AtomicBoolean resumed = new AtomicBoolean();

        Probe(Constructor<?> ctor) {
            this.ctor = ctor;
        }

        @Override
        public void run() {
            try {
                ArrayDeque<Runnable> runQueue = new ArrayDeque<>();
                Thread.Builder.OfVirtual b = (Thread.Builder.OfVirtual) ctor.newInstance((Executor) runQueue::add);
                Thread vt = b.unstarted(this::parkOnce);
                vt.start();
                if (runQueue.isEmpty()) {
                    result.set("the scheduler was not used");
                    return;
                }
                for (int round = 0; round < 3 && vt.isAlive(); round++) {
                    while (!runQueue.isEmpty()) runQueue.poll().run();
                    LockSupport.unpark(vt);
                }
                while (!runQueue.isEmpty()) runQueue.poll().run();
                result.set(vt.isVirtual() && resumed.get() && !vt.isAlive() ? null : "the probe thread did not run to its end");
            } catch (Throwable t) {
                result.set(t.getClass().getSimpleName() + ": " + t.getMessage());
            }
        }

        private void parkOnce() {
            LockSupport.park();
            resumed.set(true);
        }
    }
}
