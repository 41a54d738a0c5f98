package io.qblk.cli;

import io.qblk.ublk.UblkControl;
import io.qblk.ublk.UblkUnavailableException;
import io.quarkus.test.junit.main.LaunchResult;
import io.quarkus.test.junit.main.QuarkusMainLauncher;
import io.quarkus.test.junit.main.QuarkusMainTest;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every ublk command on a kernel without ublk (the CI host) fails with one clear line and exit
 * code 69; where the driver exists, {@code ublk list} works instead. Argument errors come first.
 */
@QuarkusMainTest
class UblkCommandTest {
    /** --cache wins; without it the CLI's edge reads QBLK_UBLK_CACHE, else none; the library only gets the result. */
    @Test
    void cacheOptionElseTheEnvironmentElseNone() {
        assertEquals(io.qblk.io.CacheMode.WRITEBACK, UblkCommand.cacheMode("writeback"));
        assertEquals(io.qblk.io.CacheMode.NONE, UblkCommand.cacheMode("none"));
        String env = System.getenv(UblkCommand.CACHE_ENV);
        assertEquals(env == null || env.isBlank() ? io.qblk.io.CacheMode.NONE : io.qblk.io.CacheMode.parse(env), UblkCommand.cacheMode(null));
    }

    private static final String NO_DRIVER = "qblk: this kernel has no ublk driver (CONFIG_BLK_DEV_UBLK";

    @Test
    void everyUblkCommandNamesTheMissingDriver(QuarkusMainLauncher launcher) {
        if (UblkControl.available()) {
            LaunchResult r = launcher.launch("ublk", "list");
            assertTrue(r.exitCode() == 0 || r.exitCode() == 1, r.getErrorOutput());
            assertTrue(r.exitCode() == 0 || r.getErrorOutput().contains("permission denied"), r.getErrorOutput());
            return;
        }
        String[][] commands = {
                {"ublk", "list"},
                {"ublk", "del", "0"},
                {"ublk", "export", "-t", "null"},
                {"ublk", "recover", "3", "-t", "null"},
                {"export", "--ublk", "-t", "null", "--size", "64M"},
        };
        for (String[] c : commands) {
            LaunchResult r = launcher.launch(c);
            assertEquals(UblkUnavailableException.EXIT_CODE, r.exitCode(), String.join(" ", c));
            String err = r.getErrorOutput().strip();
            assertTrue(err.startsWith(NO_DRIVER), String.join(" ", c) + " said: " + err);
            assertTrue(err.contains("use --nbd or the VM harness"), err);
            assertEquals(1, err.lines().count(), "one line, no stack trace: " + err);
        }
    }

    @Test
    void badQueueCountIsRejectedBeforeTouchingTheKernel(QuarkusMainLauncher launcher) {
        LaunchResult r = launcher.launch("ublk", "export", "-t", "null", "-q", "999");
        assertEquals(1, r.exitCode());
        assertTrue(r.getErrorOutput().contains("-q 999: ublk allows 1 to "), r.getErrorOutput());
    }
}
