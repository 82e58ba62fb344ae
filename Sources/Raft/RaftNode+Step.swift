extension RaftNode {
    /// Feeds one message from another member.
    public func step(_ m: Message) {
        guard m.to == id else { return }
        if m.term > term {
            switch m.kind {
            case .preVote:
                // Asking changes nobody's term.
                break
            case .preVoteResponse(let granted) where granted:
                // Granted for the term we would take: the election decides.
                break
            case .vote(_, _, let transfer) where inLease && !transfer:
                // We heard from a leader recently: a disruptive candidate gets no answer and
                // does not bump our term (check-quorum lease).
                return
            default:
                switch m.kind {
                case .append, .heartbeat, .snapshot, .quiesce: becomeFollower(term: m.term, leader: m.from)
                default: becomeFollower(term: m.term, leader: 0)
                }
            }
        } else if m.term < term {
            switch m.kind {
            case .append, .heartbeat, .quiesce:
                // A stale leader (e.g. partitioned away): our term makes it step down. Needed
                // with check-quorum and pre-vote, where our term would otherwise never reach it.
                if config.checkQuorum || config.preVote {
                    send(to: m.from, .appendResponse(reject: false, index: 0, hintIndex: 0, hintTerm: 0))
                }
            case .preVote:
                send(to: m.from, .preVoteResponse(granted: false))
            default:
                break
            }
            return
        }

        // A quiet leader asked for a vote wakes: the candidate (a member that restarted, or one
        // that lost track of it) hears from it again and follows.
        if quiesced, role == .leader {
            switch m.kind {
            case .preVote, .vote: wake()
            default: break
            }
        }
        switch m.kind {
        case .preVote(let li, let lt):
            let grant = m.term > term && hasConfiguration && log.isUpToDate(lastIndex: li, lastTerm: lt) && !inLease
            outbox.append(Message(from: id, to: m.from, term: grant ? m.term : term, kind: .preVoteResponse(granted: grant)))
        case .vote(let li, let lt, _):
            let canVote = vote == m.from || (vote == 0 && leader == 0)
            let grant = canVote && hasConfiguration && log.isUpToDate(lastIndex: li, lastTerm: lt)
            if grant {
                vote = m.from
                electionElapsed = 0
            }
            send(to: m.from, .voteResponse(granted: grant))
        case .preVoteResponse(let granted):
            guard role == .preCandidate else { return }
            tally(m.from, granted, preVote: true)
        case .voteResponse(let granted):
            guard role == .candidate else { return }
            tally(m.from, granted, preVote: false)
        case .append(let prevIndex, let prevTerm, let entries, let commit):
            if role != .follower { becomeFollower(term: term, leader: m.from) }
            leader = m.from
            electionElapsed = 0
            quiesced = false
            handleAppend(from: m.from, prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: commit)
        case .heartbeat(let commit, let context):
            if role != .follower { becomeFollower(term: term, leader: m.from) }
            leader = m.from
            electionElapsed = 0
            quiesced = false
            // The leader sends min(commit, what it knows we match): safe to take.
            if commit > log.committed && commit <= log.lastIndex { log.committed = commit }
            send(to: m.from, .heartbeatResponse(context: context))
        case .quiesce(let commit):
            if role != .follower { becomeFollower(term: term, leader: m.from) }
            leader = m.from
            electionElapsed = 0
            // Sent only when we had answered with the leader's whole log: nothing to answer.
            if commit > log.committed && commit <= log.lastIndex { log.committed = commit }
            quiesced = true
        case .snapshot(let snap):
            if role != .follower { becomeFollower(term: term, leader: m.from) }
            leader = m.from
            electionElapsed = 0
            quiesced = false
            handleSnapshot(from: m.from, snap)
        case .appendResponse(let reject, let index, let hintIndex, let hintTerm):
            guard role == .leader else { return }
            handleAppendResponse(from: m.from, reject: reject, index: index, hintIndex: hintIndex, hintTerm: hintTerm)
        case .heartbeatResponse(let context):
            guard role == .leader else { return }
            handleHeartbeatResponse(from: m.from, context: context)
        case .timeoutNow:
            guard isPromotable, role != .leader else { return }
            campaign(preVote: false, transfer: true)
        }
    }

    /// A member with no configuration at all grants no vote: it was added later and has not
    /// had the leader's snapshot yet, or its state was wiped and it came back under the same
    /// id while the others still count it as a voter. Either way it cannot know whether it
    /// voted in this term before (a wiped member that had could elect a second leader).
    var hasConfiguration: Bool { !membership.members.isEmpty }

    /// Within an election timeout of hearing from a leader (only with check-quorum).
    var inLease: Bool {
        config.checkQuorum && leader != 0 && electionElapsed < config.electionTicks
    }

    // MARK: roles

    func becomeFollower(term newTerm: Term, leader newLeader: NodeID) {
        if newTerm != term {
            term = newTerm
            vote = 0
        }
        role = .follower
        leader = newLeader
        electionElapsed = 0
        quiesced = false
        quietRounds = 0
        transferee = 0
        progress = [:]
        votes = [:]
        pendingReads = []
        readsAwaitingCommit = []
        resetRandomizedTimeout()
    }

    func campaign(preVote: Bool, transfer: Bool) {
        quiesced = false
        votes = [id: true]
        if preVote {
            role = .preCandidate
            leader = 0
        } else {
            term += 1
            vote = id
            role = .candidate
            leader = 0
        }
        electionElapsed = 0
        resetRandomizedTimeout()
        if membership.quorum <= 1 {
            if preVote {
                campaign(preVote: false, transfer: transfer)
            } else {
                becomeLeader()
            }
            return
        }
        let t = preVote ? term + 1 : term
        for v in membership.voters.sorted() where v != id {
            let kind: Message.Kind =
                preVote
                ? .preVote(lastIndex: log.lastIndex, lastTerm: log.lastTerm)
                : .vote(lastIndex: log.lastIndex, lastTerm: log.lastTerm, transfer: transfer)
            outbox.append(Message(from: id, to: v, term: t, kind: kind))
        }
    }

    func tally(_ from: NodeID, _ granted: Bool, preVote: Bool) {
        guard membership.voters.contains(from) else { return }
        votes[from] = granted
        let yes = votes.values.filter { $0 }.count
        let no = votes.count - yes
        if yes >= membership.quorum {
            if preVote {
                campaign(preVote: false, transfer: false)
            } else {
                becomeLeader()
            }
        } else if no >= membership.quorum {
            becomeFollower(term: term, leader: 0)
        }
    }

    func becomeLeader() {
        quiesced = false
        quietRounds = 0
        role = .leader
        leader = id
        transferee = 0
        electionElapsed = 0
        heartbeatElapsed = 0
        progress = [:]
        for m in membership.members {
            var p = Progress(next: log.lastIndex + 1, isLearner: membership.learners.contains(m))
            p.recentActive = true
            progress[m] = p
        }
        progress[id]?.match = log.stable
        // Any configuration entry still uncommitted must commit before another is proposed.
        pendingConfIndex = log.lastIndex
        appendAsLeader([.noop])
    }

    func tickLeader() {
        heartbeatElapsed += 1
        electionElapsed += 1
        if electionElapsed >= config.electionTicks {
            electionElapsed = 0
            if config.checkQuorum {
                var active = 0
                for (pid, p) in progress where membership.voters.contains(pid) && (pid == id || p.recentActive) { active += 1 }
                for pid in progress.keys where pid != id { progress[pid]!.recentActive = false }
                if active < membership.quorum {
                    becomeFollower(term: term, leader: 0)
                    return
                }
            }
            // A transfer that did not finish within an election timeout is abandoned.
            transferee = 0
        }
        if heartbeatElapsed >= config.heartbeatTicks {
            heartbeatElapsed = 0
            if quietRoundEnded() {
                quiesce()
                return
            }
            // Carrying the newest pending read's context: its answers confirm every read
            // before it too, so a read whose own round was lost still completes.
            broadcastHeartbeat(context: pendingReads.last?.context ?? 0)
        }
    }
}

extension RaftNode {
    // MARK: quiescence

    /// Counts a heartbeat round towards quiescence: true when the last `quiesceAfterRounds`
    /// rounds had nothing to send (every entry stable and committed, in this term; no read,
    /// transfer or change pending) and every member answered each of them with the whole log.
    /// Two answered rounds with the same commit index mean every follower has that index.
    func quietRoundEnded() -> Bool {
        guard config.quiesceAfterRounds > 0 else { return false }
        var quiet =
            transferee == 0 && pendingReads.isEmpty && readsAwaitingCommit.isEmpty && !needsBroadcast
            && log.committed == log.lastIndex && log.stable == log.lastIndex && log.term(at: log.committed) == term
        for pid in progress.keys where pid != id {
            let p = progress[pid]!
            if !p.heardSinceHeartbeat || p.match != log.lastIndex { quiet = false }
            progress[pid]!.heardSinceHeartbeat = false
        }
        quietRounds = quiet ? quietRounds + 1 : 0
        return quietRounds > config.quiesceAfterRounds
    }

    func quiesce() {
        quiesced = true
        quietRounds = 0
        for pid in progress.keys.sorted() where pid != id { send(to: pid, .quiesce(commit: log.committed)) }
    }
}
