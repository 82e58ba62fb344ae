import ArgumentParser

/// warrenctl: rabbitmqctl's everyday verbs, as a client of the management API.
@main
struct WarrenCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warrenctl",
        abstract: "Operates a Warren node through its management API (rabbitmqctl's verbs, columns and output).",
        discussion: """
            Reaches localhost:15672 as guest unless --host/--port/--username/--password (or WARRENCTL_HOST, \
            WARRENCTL_PORT, WARRENCTL_USER, WARRENCTL_PASSWORD) say otherwise. Exit codes: 0 done, 64 usage, \
            65 bad data or not found, 69 node unreachable, 77 not authorised.
            """,
        subcommands: [
            ListVerb<QueuesList>.self, ListVerb<ExchangesList>.self, ListVerb<BindingsList>.self, ListVerb<ConnectionsList>.self,
            ListVerb<ChannelsList>.self, ListVerb<ConsumersList>.self, ListVerb<UsersList>.self, ListVerb<VHostsList>.self,
            ListVerb<PermissionsList>.self, ListVerb<PoliciesList>.self, ListVerb<ParametersList>.self, ListVerb<GlobalParametersList>.self, AddUser.self, DeleteUser.self,
            ChangePassword.self, SetUserTags.self, AddVHost.self, DeleteVHost.self, SetPermissions.self, ClearPermissions.self,
            SetPolicy.self, ClearPolicy.self, SetParameter.self, ClearParameter.self, SetGlobalParameter.self, ClearGlobalParameter.self, PurgeQueue.self, DeleteQueue.self, CloseConnection.self, ExportDefinitions.self,
            ImportDefinitions.self, Status.self, ClusterStatus.self, JoinCluster.self, ForgetClusterNode.self, Reset.self,
            StopApp.self, StartApp.self, SetClusterName.self, QuorumStatus.self, AddMember.self, DeleteMember.self, Grow.self, Shrink.self,
            TransferLeadership.self, Rebalance.self, FederationStatus.self, RestartFederationLink.self,
        ])
}
