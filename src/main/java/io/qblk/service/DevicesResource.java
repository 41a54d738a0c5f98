package io.qblk.service;

import io.smallrye.common.annotation.RunOnVirtualThread;
import jakarta.inject.Inject;
import jakarta.ws.rs.Consumes;
import jakarta.ws.rs.DELETE;
import jakarta.ws.rs.GET;
import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.PathParam;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;
import java.net.URI;
import java.util.List;
import org.eclipse.microprofile.openapi.annotations.Operation;

/** {@code /devices}: list, add, inspect, delete and recover served devices. */
@Path("/devices")
@Produces(MediaType.APPLICATION_JSON)
@RunOnVirtualThread
public class DevicesResource {
    @Inject DeviceManager devices;
    @Inject QblkConfig config;
    @Inject ImagePaths paths;

    @GET
    @Operation(summary = "List devices")
    public List<DeviceInfo> list() {
        return devices.list();
    }

    @POST
    @Consumes(MediaType.APPLICATION_JSON)
    @Operation(summary = "Add a device: open (or create) an image and serve it")
    public Response add(DeviceRequest body) {
        if (body == null) throw ApiException.badRequest("request body is missing (expected a JSON device definition)");
        DeviceSpec spec;
        try {
            spec = DeviceSpecs.build(body.draft(), "", config.nbd().address(),
                    body.createSize() != null ? paths::existingOrCreatable : paths::existing);
        } catch (DeviceSpecs.Invalid e) {
            throw ApiException.invalid(e.errors());
        }
        DeviceInfo info = devices.add(spec);
        return Response.created(URI.create("/devices/" + info.name())).entity(info).build();
    }

    @GET
    @Path("/{name}")
    @Operation(summary = "Describe one device")
    public DeviceInfo get(@PathParam("name") String name) {
        return devices.get(name);
    }

    @DELETE
    @Path("/{name}")
    @Operation(summary = "Stop a device: refuse new I/O, drain, flush, close the image")
    public Response delete(@PathParam("name") String name) {
        devices.remove(name);
        return Response.noContent().build();
    }

    @POST
    @Path("/{name}/recover")
    @Operation(summary = "Restart a device from its image (after a frontend or I/O failure)")
    public DeviceInfo recover(@PathParam("name") String name) {
        return devices.recover(name);
    }
}
