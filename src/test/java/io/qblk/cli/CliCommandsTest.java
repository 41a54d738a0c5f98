package io.qblk.cli;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.quarkus.test.junit.main.Launch;
import io.quarkus.test.junit.main.LaunchResult;
import io.quarkus.test.junit.main.QuarkusMainLauncher;
import io.quarkus.test.junit.main.QuarkusMainTest;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Each offline command launched through the real Quarkus main (CDI, picocli factory, exit code
 * propagation): one launch per command, plus three bad-input launches. The full set of output and error cases runs in
 * {@link CliInProcessTest}, which skips the Quarkus boot per call.
 */
@QuarkusMainTest
class CliCommandsTest {
    @TempDir
    Path dir;

    @AfterAll
    static void clearHttpProperty() {
        // QblkMain.main sets this for one-shot commands; never let it leak into later @QuarkusTest classes.
        System.clearProperty(QblkMain.HTTP_ENABLED);
    }

    @Test
    void create(QuarkusMainLauncher l) throws Exception {
        CliScenarios.createWritesQemuReadableImageAndPrintsFormattingLine(l, dir);
    }

    @Test
    void info(QuarkusMainLauncher l) throws Exception {
        CliScenarios.infoJsonOnce(l, dir);
    }

    @Test
    void check(QuarkusMainLauncher l) throws Exception {
        CliScenarios.checkLeakOnce(l, dir);
    }

    @Test
    void map(QuarkusMainLauncher l) throws Exception {
        CliScenarios.mapJsonOnce(l, dir);
    }

    @Test
    void io(QuarkusMainLauncher l) throws Exception {
        CliScenarios.ioOnce(l, dir);
    }

    @Test
    void bench(QuarkusMainLauncher l) throws Exception {
        CliScenarios.benchOnce(l, dir);
    }

    @Test
    @Launch(value = {"compare", "/nonexistent/a.qcow2", "/nonexistent/b.qcow2"}, exitCode = 2)
    void compareErrorExitsTwo(LaunchResult r) {
        CliScenarios.assertOneErrorLine(r, "/nonexistent/a.qcow2: no such file");
    }

    @Test
    @Launch(value = {"measure", "-O", "qcow2", "--size", "1G"})
    void measure(LaunchResult r) {
        org.junit.jupiter.api.Assertions.assertEquals("required size: 393216\nfully allocated size: 1074135040", r.getOutput().strip());
    }

    @Test
    @Launch(value = {"info", "/nonexistent/qblk-missing.qcow2"}, exitCode = 1)
    void missingFile(LaunchResult r) {
        CliScenarios.assertOneErrorLine(r, "/nonexistent/qblk-missing.qcow2: no such file");
    }

    @Test
    @Launch(value = {"create", "/nonexistent/x.qcow2", "1000"}, exitCode = 1)
    void sizeNotMultipleOf512(LaunchResult r) {
        CliScenarios.assertOneErrorLine(r, "not a multiple of 512");
    }

    @Test
    @Launch(value = {"info", "--bogus", "x.qcow2"}, exitCode = 1)
    void unknownOption(LaunchResult r) {
        CliScenarios.assertOneErrorLine(r, "--bogus");
        assertTrue(r.getErrorOutput().contains("qblk info"));
    }
}
