package io.qblk.cli;

import picocli.CommandLine;

/** Runs the qblk picocli tree without Quarkus, so a test can start `qblk export` as a child JVM. */
public final class ExportMainForTest {
    public static void main(String[] args) {
        int rc = QblkMain.commandLine(CommandLine.defaultFactory()).execute(args);
        System.exit(rc);
    }
}
