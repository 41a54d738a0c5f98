package io.qblk.cli;

import io.quarkus.picocli.runtime.annotations.TopCommand;
import picocli.CommandLine.Command;

@TopCommand
@Command(name = "qblk", mixinStandardHelpOptions = true, version = "qblk 0.1.0",
        description = "Serve qcow2 images as Linux block devices (ublk, NBD) and work on them offline.",
        subcommands = {ServeCommand.class, DeviceCommand.class, ExportCommand.class})
public class QblkCommand {
}
