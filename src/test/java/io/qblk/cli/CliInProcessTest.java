package io.qblk.cli;

import io.quarkus.test.junit.main.LaunchResult;
import io.quarkus.test.junit.main.QuarkusMainLauncher;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** All CLI scenarios on the in-process picocli tree (what the Quarkus main runs, minus the boot). */
class CliInProcessTest {
    @TempDir
    Path dir;

    /** A launcher that runs qblk in this JVM and splits its output into lines like Quarkus' LaunchResult. */
    static final QuarkusMainLauncher IN_PROCESS = args -> {
        QblkRunner.Result r = QblkRunner.run(args);
        return new LaunchResult() {
            public List<String> getOutputStream() { return r.out().lines().toList(); }
            public List<String> getErrorStream() { return r.err().lines().toList(); }
            public int exitCode() { return r.exitCode(); }
        };
    };

    @Test void createQcow2() throws Exception { CliScenarios.createWritesQemuReadableImageAndPrintsFormattingLine(IN_PROCESS, dir); }
    @Test void createRawAndV2() throws Exception { CliScenarios.createRawAndVersion2(IN_PROCESS, dir); }
    @Test void createRejects() throws Exception { CliScenarios.createRejectsBadInputWithoutTouchingFiles(IN_PROCESS, dir); }
    @Test void info() throws Exception { CliScenarios.infoHumanAndJsonMatchQemuImg(IN_PROCESS, dir); }
    @Test void infoBacking() throws Exception { CliScenarios.infoShowsTheBackingFileLikeQemuImg(IN_PROCESS, dir); }
    @Test void deviceNodeBacking() throws Exception { CliScenarios.aBackingDeviceNodeIsRefused(IN_PROCESS, dir); }
    @Test void checkAll() throws Exception { CliScenarios.checkExitCodesCleanLeakedCorruptAndRepair(IN_PROCESS, dir); }
    @Test void checkRebuild() throws Exception { CliScenarios.checkRepairRebuildsBrokenRefcounts(IN_PROCESS, dir); }
    @Test void ioDiscardThin() throws Exception { CliScenarios.ioDiscardPunchesHoles(IN_PROCESS, dir); }
    @Test void checkLeak() throws Exception { CliScenarios.checkLeakExitCodeAndRepair(IN_PROCESS, dir); }
    @Test void map() throws Exception { CliScenarios.mapJsonAndHuman(IN_PROCESS, dir); }
    @Test void io() throws Exception { CliScenarios.ioWritesReadsVerifiesAndReportsMismatch(IN_PROCESS, dir); }
    @Test void bench() throws Exception { CliScenarios.benchReportsIops(IN_PROCESS, dir); }
    @Test void badInput() throws Exception { CliScenarios.badOutputFormatAndNotQcow2(IN_PROCESS, dir); }
    @Test void infoJsonOnce() throws Exception { CliScenarios.infoJsonOnce(IN_PROCESS, dir); }
    @Test void checkLeakOnce() throws Exception { CliScenarios.checkLeakOnce(IN_PROCESS, dir); }
    @Test void mapJsonOnce() throws Exception { CliScenarios.mapJsonOnce(IN_PROCESS, dir); }
    @Test void ioOnce() throws Exception { CliScenarios.ioOnce(IN_PROCESS, dir); }
    @Test void benchOnce() throws Exception { CliScenarios.benchOnce(IN_PROCESS, dir); }
    @Test void rawMap() throws Exception { CliScenarios.rawMapMatchesQemu(IN_PROCESS, dir); }
    @Test void missingFileAndUsage() { CliScenarios.missingFile(IN_PROCESS, dir); }
}
