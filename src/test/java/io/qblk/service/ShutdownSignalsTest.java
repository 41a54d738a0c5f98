package io.qblk.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import sun.misc.Signal;
import sun.misc.SignalHandler;

/** The signal counting of {@link ShutdownSignals}; src/test/sh/serve-signals.sh tests it with real signals. */
class ShutdownSignalsTest {
    private final List<Integer> halts = new ArrayList<>();
    private final List<String> delegated = new ArrayList<>();
    private final ByteArrayOutputStream err = new ByteArrayOutputStream();
    private final ShutdownSignals signals = new ShutdownSignals(halts::add, new PrintStream(err, true, StandardCharsets.UTF_8));
    private final SignalHandler jvm = sig -> delegated.add(sig.getName());

    @Test
    void firstSignalStartsTheGracefulShutdownSecondHalts() {
        signals.handle(new Signal("TERM"), jvm);
        assertEquals(List.of("TERM"), delegated, "the first SIGTERM goes to the JVM's handler (System.exit, shutdown hooks)");
        assertEquals(List.of(), halts);
        assertEquals("", err.toString(StandardCharsets.UTF_8));

        signals.handle(new Signal("TERM"), jvm);
        assertEquals(List.of("TERM"), delegated, "the second is not delegated");
        assertEquals(List.of(ShutdownSignals.FORCED_EXIT_CODE), halts);
        assertEquals("qblk: second SIGTERM: forcing exit (status 75), images may be left dirty; they are repaired on next open\n",
                err.toString(StandardCharsets.UTF_8));
    }

    @Test
    void interruptAfterTerminateAlsoForces() {
        signals.handle(new Signal("TERM"), jvm);
        signals.handle(new Signal("INT"), jvm);
        assertEquals(List.of("TERM"), delegated);
        assertEquals(List.of(75), halts);
        assertTrue(err.toString(StandardCharsets.UTF_8).startsWith("qblk: second SIGINT: forcing exit"), err::toString);
    }
}
